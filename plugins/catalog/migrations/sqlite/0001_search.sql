-- Full-text search over name and description (search.ts): an external-content FTS5 table, so the
-- text is stored once (in catalog_products) and only the index lives here, kept in step by triggers.
-- It is keyed by catalog_products' rowid: products are never deleted and Tessera never runs VACUUM,
-- which could renumber rowids; should that happen, INSERT INTO catalog_products_fts(catalog_products_fts) VALUES ('rebuild').
CREATE VIRTUAL TABLE `catalog_products_fts` USING fts5(name, description, content='catalog_products', content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2');
--> statement-breakpoint
CREATE TRIGGER `catalog_products_fts_insert` AFTER INSERT ON `catalog_products` BEGIN
  INSERT INTO catalog_products_fts(rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;
--> statement-breakpoint
CREATE TRIGGER `catalog_products_fts_delete` AFTER DELETE ON `catalog_products` BEGIN
  INSERT INTO catalog_products_fts(catalog_products_fts, rowid, name, description) VALUES ('delete', old.rowid, old.name, old.description);
END;
--> statement-breakpoint
-- Only a change of the indexed text touches the index (price or active changes do not).
CREATE TRIGGER `catalog_products_fts_update` AFTER UPDATE OF name, description ON `catalog_products` BEGIN
  INSERT INTO catalog_products_fts(catalog_products_fts, rowid, name, description) VALUES ('delete', old.rowid, old.name, old.description);
  INSERT INTO catalog_products_fts(rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;
