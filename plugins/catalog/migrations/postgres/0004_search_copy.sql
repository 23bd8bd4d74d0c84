-- A narrow copy of what relevance ranking reads (search.ts): the tsvector and the filter columns,
-- 36 MB against catalog_products' 67 MB at 100,000 products. Ranking a common word fetches every
-- matching row, so it fetches these small rows and joins the wide ones only for the page it returns.
-- Kept by triggers in the writing transaction; `in_stock` rather than `available`, so a stock event
-- rewrites the copy only when a product goes in or out of stock.
CREATE TABLE "catalog_search" (
	"id" text PRIMARY KEY NOT NULL,
	"search" tsvector NOT NULL,
	"active" boolean NOT NULL,
	"category_id" text,
	"price" bigint NOT NULL,
	"in_stock" boolean NOT NULL
);
--> statement-breakpoint
INSERT INTO "catalog_search" ("id", "search", "active", "category_id", "price", "in_stock")
	SELECT "id", "search", "active", "category_id", "price", "available" > 0 FROM "catalog_products";
--> statement-breakpoint
CREATE INDEX "catalog_search_search" ON "catalog_search" USING gin ("search") WITH (fastupdate = off);
--> statement-breakpoint
-- Statistics for the copy of an existing catalog: the planner picks the text index from the first search on.
ANALYZE "catalog_search";
--> statement-breakpoint
-- search_path pinned to this schema: a writer with another search_path still reaches this copy.
CREATE FUNCTION "catalog_search_copy"() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD."id" <> NEW."id") THEN
		DELETE FROM "catalog_search" WHERE "id" = OLD."id";
	END IF;
	IF TG_OP <> 'DELETE' THEN
		INSERT INTO "catalog_search" ("id", "search", "active", "category_id", "price", "in_stock")
			VALUES (NEW."id", NEW."search", NEW."active", NEW."category_id", NEW."price", NEW."available" > 0)
			ON CONFLICT ("id") DO UPDATE SET "search" = excluded."search", "active" = excluded."active",
				"category_id" = excluded."category_id", "price" = excluded."price", "in_stock" = excluded."in_stock";
	END IF;
	RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "catalog_search_copy_insert_delete" AFTER INSERT OR DELETE ON "catalog_products"
	FOR EACH ROW EXECUTE FUNCTION "catalog_search_copy"();
--> statement-breakpoint
-- Only a change of what the copy holds rewrites it (not updated_at, attributes, or a stock level that stays above zero).
CREATE TRIGGER "catalog_search_copy_update" AFTER UPDATE ON "catalog_products" FOR EACH ROW
	WHEN (OLD."id" IS DISTINCT FROM NEW."id" OR OLD."name" IS DISTINCT FROM NEW."name" OR OLD."description" IS DISTINCT FROM NEW."description"
		OR OLD."active" IS DISTINCT FROM NEW."active" OR OLD."category_id" IS DISTINCT FROM NEW."category_id"
		OR OLD."price" IS DISTINCT FROM NEW."price" OR (OLD."available" > 0) IS DISTINCT FROM (NEW."available" > 0))
	EXECUTE FUNCTION "catalog_search_copy"();
--> statement-breakpoint
CREATE FUNCTION "catalog_search_copy_truncate"() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	TRUNCATE "catalog_search";
	RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "catalog_search_copy_truncate" AFTER TRUNCATE ON "catalog_products"
	FOR EACH STATEMENT EXECUTE FUNCTION "catalog_search_copy_truncate"();
