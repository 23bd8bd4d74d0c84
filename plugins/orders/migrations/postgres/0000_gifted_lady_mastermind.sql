CREATE TABLE "orders_cart_items" (
	"cart_id" text NOT NULL,
	"sku" text NOT NULL,
	"quantity" integer NOT NULL,
	"added_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "orders_cart_items_cart_id_sku_pk" PRIMARY KEY("cart_id","sku")
);
--> statement-breakpoint
CREATE TABLE "orders_carts" (
	"id" text PRIMARY KEY NOT NULL,
	"customer_id" text NOT NULL,
	"status" text NOT NULL,
	"checkout_id" text,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "orders_checkouts" (
	"id" text PRIMARY KEY NOT NULL,
	"cart_id" text NOT NULL,
	"customer_id" text NOT NULL,
	"idempotency_key" text NOT NULL,
	"request_hash" text NOT NULL,
	"status" text NOT NULL,
	"step" text NOT NULL,
	"lines" jsonb NOT NULL,
	"total" bigint NOT NULL,
	"currency" text NOT NULL,
	"shipping_address" jsonb NOT NULL,
	"allocations" jsonb,
	"payment_id" text,
	"order_id" text,
	"error" jsonb,
	"driver" text,
	"lease_until" timestamp (3) with time zone NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "orders_effects" (
	"id" text PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"order_id" text NOT NULL,
	"return_id" text,
	"restock_reference" text NOT NULL,
	"restock" jsonb NOT NULL,
	"payment_id" text NOT NULL,
	"refund_amount" bigint NOT NULL,
	"refund_key" text NOT NULL,
	"status" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"lease_until" timestamp (3) with time zone NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"done_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE TABLE "orders_status_history" (
	"id" text PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"from_status" text,
	"to_status" text NOT NULL,
	"actor" text NOT NULL,
	"note" text,
	"at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "orders_order_lines" (
	"order_id" text NOT NULL,
	"sku" text NOT NULL,
	"name" text NOT NULL,
	"unit_price" bigint NOT NULL,
	"quantity" integer NOT NULL,
	"returned" integer DEFAULT 0 NOT NULL,
	"allocations" jsonb NOT NULL,
	CONSTRAINT "orders_order_lines_order_id_sku_pk" PRIMARY KEY("order_id","sku")
);
--> statement-breakpoint
CREATE TABLE "orders_orders" (
	"id" text PRIMARY KEY NOT NULL,
	"checkout_id" text NOT NULL,
	"customer_id" text NOT NULL,
	"status" text NOT NULL,
	"total" bigint NOT NULL,
	"currency" text NOT NULL,
	"payment_id" text NOT NULL,
	"shipping_address" jsonb NOT NULL,
	"refunded" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "orders_returns" (
	"id" text PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"customer_id" text NOT NULL,
	"status" text NOT NULL,
	"reason" text NOT NULL,
	"lines" jsonb NOT NULL,
	"amount" bigint NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"received_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE INDEX "orders_carts_customer" ON "orders_carts" USING btree ("customer_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "orders_checkouts_customer_key" ON "orders_checkouts" USING btree ("customer_id","idempotency_key");--> statement-breakpoint
CREATE INDEX "orders_checkouts_unsettled" ON "orders_checkouts" USING btree ("status","lease_until");--> statement-breakpoint
CREATE INDEX "orders_checkouts_customer" ON "orders_checkouts" USING btree ("customer_id","id");--> statement-breakpoint
CREATE INDEX "orders_effects_pending" ON "orders_effects" USING btree ("status","lease_until");--> statement-breakpoint
CREATE INDEX "orders_status_history_order" ON "orders_status_history" USING btree ("order_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "orders_orders_checkout" ON "orders_orders" USING btree ("checkout_id");--> statement-breakpoint
CREATE INDEX "orders_orders_customer" ON "orders_orders" USING btree ("customer_id","id");--> statement-breakpoint
CREATE INDEX "orders_orders_status" ON "orders_orders" USING btree ("status","id");--> statement-breakpoint
CREATE INDEX "orders_returns_order" ON "orders_returns" USING btree ("order_id","id");