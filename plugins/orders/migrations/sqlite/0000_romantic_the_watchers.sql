CREATE TABLE `orders_cart_items` (
	`cart_id` text NOT NULL,
	`sku` text NOT NULL,
	`quantity` integer NOT NULL,
	`added_at` integer NOT NULL,
	PRIMARY KEY(`cart_id`, `sku`)
);
--> statement-breakpoint
CREATE TABLE `orders_carts` (
	`id` text PRIMARY KEY NOT NULL,
	`customer_id` text NOT NULL,
	`status` text NOT NULL,
	`checkout_id` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `orders_carts_customer` ON `orders_carts` (`customer_id`,`id`);--> statement-breakpoint
CREATE TABLE `orders_checkouts` (
	`id` text PRIMARY KEY NOT NULL,
	`cart_id` text NOT NULL,
	`customer_id` text NOT NULL,
	`idempotency_key` text NOT NULL,
	`request_hash` text NOT NULL,
	`status` text NOT NULL,
	`step` text NOT NULL,
	`lines` text NOT NULL,
	`total` integer NOT NULL,
	`currency` text NOT NULL,
	`shipping_address` text NOT NULL,
	`allocations` text,
	`payment_id` text,
	`order_id` text,
	`error` text,
	`driver` text,
	`lease_until` integer NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `orders_checkouts_customer_key` ON `orders_checkouts` (`customer_id`,`idempotency_key`);--> statement-breakpoint
CREATE INDEX `orders_checkouts_unsettled` ON `orders_checkouts` (`status`,`lease_until`);--> statement-breakpoint
CREATE INDEX `orders_checkouts_customer` ON `orders_checkouts` (`customer_id`,`id`);--> statement-breakpoint
CREATE TABLE `orders_effects` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`order_id` text NOT NULL,
	`return_id` text,
	`restock_reference` text NOT NULL,
	`restock` text NOT NULL,
	`payment_id` text NOT NULL,
	`refund_amount` integer NOT NULL,
	`refund_key` text NOT NULL,
	`status` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`last_error` text,
	`lease_until` integer NOT NULL,
	`created_at` integer NOT NULL,
	`done_at` integer
);
--> statement-breakpoint
CREATE INDEX `orders_effects_pending` ON `orders_effects` (`status`,`lease_until`);--> statement-breakpoint
CREATE TABLE `orders_status_history` (
	`id` text PRIMARY KEY NOT NULL,
	`order_id` text NOT NULL,
	`from_status` text,
	`to_status` text NOT NULL,
	`actor` text NOT NULL,
	`note` text,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `orders_status_history_order` ON `orders_status_history` (`order_id`,`id`);--> statement-breakpoint
CREATE TABLE `orders_order_lines` (
	`order_id` text NOT NULL,
	`sku` text NOT NULL,
	`name` text NOT NULL,
	`unit_price` integer NOT NULL,
	`quantity` integer NOT NULL,
	`returned` integer DEFAULT 0 NOT NULL,
	`allocations` text NOT NULL,
	PRIMARY KEY(`order_id`, `sku`)
);
--> statement-breakpoint
CREATE TABLE `orders_orders` (
	`id` text PRIMARY KEY NOT NULL,
	`checkout_id` text NOT NULL,
	`customer_id` text NOT NULL,
	`status` text NOT NULL,
	`total` integer NOT NULL,
	`currency` text NOT NULL,
	`payment_id` text NOT NULL,
	`shipping_address` text NOT NULL,
	`refunded` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `orders_orders_checkout` ON `orders_orders` (`checkout_id`);--> statement-breakpoint
CREATE INDEX `orders_orders_customer` ON `orders_orders` (`customer_id`,`id`);--> statement-breakpoint
CREATE INDEX `orders_orders_status` ON `orders_orders` (`status`,`id`);--> statement-breakpoint
CREATE TABLE `orders_returns` (
	`id` text PRIMARY KEY NOT NULL,
	`order_id` text NOT NULL,
	`customer_id` text NOT NULL,
	`status` text NOT NULL,
	`reason` text NOT NULL,
	`lines` text NOT NULL,
	`amount` integer NOT NULL,
	`created_at` integer NOT NULL,
	`received_at` integer
);
--> statement-breakpoint
CREATE INDEX `orders_returns_order` ON `orders_returns` (`order_id`,`id`);