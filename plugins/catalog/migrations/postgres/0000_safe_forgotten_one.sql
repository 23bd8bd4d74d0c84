CREATE TABLE "catalog_categories" (
	"id" text PRIMARY KEY NOT NULL,
	"slug" text NOT NULL,
	"name" text NOT NULL,
	"parent_id" text,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "catalog_products" (
	"id" text PRIMARY KEY NOT NULL,
	"sku" text NOT NULL,
	"name" text NOT NULL,
	"description" text NOT NULL,
	"price" bigint NOT NULL,
	"currency" text NOT NULL,
	"category_id" text,
	"attributes" jsonb NOT NULL,
	"active" boolean NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "catalog_stock" (
	"sku" text NOT NULL,
	"warehouse" text NOT NULL,
	"available" integer NOT NULL,
	"event_id" text NOT NULL,
	CONSTRAINT "catalog_stock_sku_warehouse_pk" PRIMARY KEY("sku","warehouse")
);
--> statement-breakpoint
CREATE UNIQUE INDEX "catalog_categories_slug" ON "catalog_categories" USING btree ("slug");--> statement-breakpoint
CREATE INDEX "catalog_categories_parent" ON "catalog_categories" USING btree ("parent_id");--> statement-breakpoint
CREATE UNIQUE INDEX "catalog_products_sku" ON "catalog_products" USING btree ("sku");--> statement-breakpoint
CREATE INDEX "catalog_products_newest" ON "catalog_products" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "catalog_products_price" ON "catalog_products" USING btree ("price","id");--> statement-breakpoint
CREATE INDEX "catalog_products_name" ON "catalog_products" USING btree ("name","id");--> statement-breakpoint
CREATE INDEX "catalog_products_category" ON "catalog_products" USING btree ("category_id","created_at","id");