-- Full-text search over name and description (search.ts): a stored tsvector (name weighs more than
-- the description) with a GIN index. English stemming, as SQLite's porter tokenizer does.
ALTER TABLE "catalog_products" ADD COLUMN "search" tsvector GENERATED ALWAYS AS (setweight(to_tsvector('english', "name"), 'A') || setweight(to_tsvector('english', "description"), 'B')) STORED;
--> statement-breakpoint
-- fastupdate off: searches never scan a pending list; catalog writes are rare enough to pay for it.
CREATE INDEX "catalog_products_search" ON "catalog_products" USING gin ("search") WITH (fastupdate = off);
