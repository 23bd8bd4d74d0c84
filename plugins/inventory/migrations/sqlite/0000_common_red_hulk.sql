CREATE TABLE `inventory_alerts` (
	`id` text PRIMARY KEY NOT NULL,
	`type` text NOT NULL,
	`sku` text,
	`warehouse` text,
	`device_id` text,
	`message` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `inventory_alerts_created` ON `inventory_alerts` (`id`);--> statement-breakpoint
CREATE TABLE `inventory_devices` (
	`id` text PRIMARY KEY NOT NULL,
	`warehouse` text NOT NULL,
	`name` text NOT NULL,
	`secret_hash` text NOT NULL,
	`status` text NOT NULL,
	`last_seen_at` integer,
	`heartbeat_seconds` integer NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `inventory_items` (
	`id` text PRIMARY KEY NOT NULL,
	`sku` text NOT NULL,
	`name` text NOT NULL,
	`reorder_point` integer,
	`reorder_quantity` integer,
	`supplier_id` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `inventory_items_sku` ON `inventory_items` (`sku`);--> statement-breakpoint
CREATE TABLE `inventory_levels` (
	`sku` text NOT NULL,
	`warehouse` text NOT NULL,
	`on_hand` integer DEFAULT 0 NOT NULL,
	`reserved` integer DEFAULT 0 NOT NULL,
	`last_count_ts` integer,
	`low_alerted` integer DEFAULT false NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`sku`, `warehouse`)
);
--> statement-breakpoint
CREATE TABLE `inventory_movements` (
	`id` text PRIMARY KEY NOT NULL,
	`sku` text NOT NULL,
	`warehouse` text NOT NULL,
	`delta` integer NOT NULL,
	`on_hand_after` integer NOT NULL,
	`reason` text NOT NULL,
	`source` text NOT NULL,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `inventory_movements_level` ON `inventory_movements` (`sku`,`warehouse`,`id`);--> statement-breakpoint
CREATE TABLE `inventory_purchase_orders` (
	`id` text PRIMARY KEY NOT NULL,
	`supplier_id` text NOT NULL,
	`warehouse` text NOT NULL,
	`status` text NOT NULL,
	`lines` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `inventory_readings` (
	`id` text PRIMARY KEY NOT NULL,
	`device_id` text NOT NULL,
	`seq` integer,
	`ts` integer,
	`sku` text,
	`type` text,
	`value` integer,
	`status` text NOT NULL,
	`reason` text,
	`raw` text,
	`received_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `inventory_readings_device_seq` ON `inventory_readings` (`device_id`,`seq`);--> statement-breakpoint
CREATE INDEX `inventory_readings_device` ON `inventory_readings` (`device_id`,`id`);--> statement-breakpoint
CREATE TABLE `inventory_reservations` (
	`id` text PRIMARY KEY NOT NULL,
	`sku` text NOT NULL,
	`warehouse` text NOT NULL,
	`quantity` integer NOT NULL,
	`reference` text NOT NULL,
	`status` text NOT NULL,
	`expires_at` integer NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `inventory_reservations_expiry` ON `inventory_reservations` (`status`,`expires_at`);--> statement-breakpoint
CREATE TABLE `inventory_suppliers` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`email` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `inventory_warehouses` (
	`id` text PRIMARY KEY NOT NULL,
	`code` text NOT NULL,
	`name` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `inventory_warehouses_code` ON `inventory_warehouses` (`code`);