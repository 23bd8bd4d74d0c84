CREATE TABLE "inventory_alerts" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"sku" text,
	"warehouse" text,
	"device_id" text,
	"message" text NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inventory_devices" (
	"id" text PRIMARY KEY NOT NULL,
	"warehouse" text NOT NULL,
	"name" text NOT NULL,
	"secret_hash" text NOT NULL,
	"status" text NOT NULL,
	"last_seen_at" timestamp (3) with time zone,
	"heartbeat_seconds" integer NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inventory_items" (
	"id" text PRIMARY KEY NOT NULL,
	"sku" text NOT NULL,
	"name" text NOT NULL,
	"reorder_point" integer,
	"reorder_quantity" integer,
	"supplier_id" text,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inventory_levels" (
	"sku" text NOT NULL,
	"warehouse" text NOT NULL,
	"on_hand" integer DEFAULT 0 NOT NULL,
	"reserved" integer DEFAULT 0 NOT NULL,
	"last_count_ts" bigint,
	"low_alerted" boolean DEFAULT false NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "inventory_levels_sku_warehouse_pk" PRIMARY KEY("sku","warehouse")
);
--> statement-breakpoint
CREATE TABLE "inventory_movements" (
	"id" text PRIMARY KEY NOT NULL,
	"sku" text NOT NULL,
	"warehouse" text NOT NULL,
	"delta" integer NOT NULL,
	"on_hand_after" integer NOT NULL,
	"reason" text NOT NULL,
	"source" text NOT NULL,
	"at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inventory_purchase_orders" (
	"id" text PRIMARY KEY NOT NULL,
	"supplier_id" text NOT NULL,
	"warehouse" text NOT NULL,
	"status" text NOT NULL,
	"lines" jsonb NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inventory_readings" (
	"id" text PRIMARY KEY NOT NULL,
	"device_id" text NOT NULL,
	"seq" bigint,
	"ts" bigint,
	"sku" text,
	"type" text,
	"value" integer,
	"status" text NOT NULL,
	"reason" text,
	"raw" text,
	"received_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inventory_reservations" (
	"id" text PRIMARY KEY NOT NULL,
	"sku" text NOT NULL,
	"warehouse" text NOT NULL,
	"quantity" integer NOT NULL,
	"reference" text NOT NULL,
	"status" text NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inventory_suppliers" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"email" text,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inventory_warehouses" (
	"id" text PRIMARY KEY NOT NULL,
	"code" text NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "inventory_alerts_created" ON "inventory_alerts" USING btree ("id");--> statement-breakpoint
CREATE UNIQUE INDEX "inventory_items_sku" ON "inventory_items" USING btree ("sku");--> statement-breakpoint
CREATE INDEX "inventory_movements_level" ON "inventory_movements" USING btree ("sku","warehouse","id");--> statement-breakpoint
CREATE UNIQUE INDEX "inventory_readings_device_seq" ON "inventory_readings" USING btree ("device_id","seq");--> statement-breakpoint
CREATE INDEX "inventory_readings_device" ON "inventory_readings" USING btree ("device_id","id");--> statement-breakpoint
CREATE INDEX "inventory_reservations_expiry" ON "inventory_reservations" USING btree ("status","expires_at");--> statement-breakpoint
CREATE UNIQUE INDEX "inventory_warehouses_code" ON "inventory_warehouses" USING btree ("code");