CREATE TABLE `catalog_categories` (
	`id` text PRIMARY KEY NOT NULL,
	`slug` text NOT NULL,
	`name` text NOT NULL,
	`parent_id` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `catalog_categories_slug` ON `catalog_categories` (`slug`);--> statement-breakpoint
CREATE INDEX `catalog_categories_parent` ON `catalog_categories` (`parent_id`);--> statement-breakpoint
CREATE TABLE `catalog_products` (
	`id` text PRIMARY KEY NOT NULL,
	`sku` text NOT NULL,
	`name` text NOT NULL,
	`description` text NOT NULL,
	`price` integer NOT NULL,
	`currency` text NOT NULL,
	`category_id` text,
	`attributes` text NOT NULL,
	`active` integer NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `catalog_products_sku` ON `catalog_products` (`sku`);--> statement-breakpoint
CREATE INDEX `catalog_products_newest` ON `catalog_products` (`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `catalog_products_price` ON `catalog_products` (`price`,`id`);--> statement-breakpoint
CREATE INDEX `catalog_products_name` ON `catalog_products` (`name`,`id`);--> statement-breakpoint
CREATE INDEX `catalog_products_category` ON `catalog_products` (`category_id`,`created_at`,`id`);--> statement-breakpoint
CREATE TABLE `catalog_stock` (
	`sku` text NOT NULL,
	`warehouse` text NOT NULL,
	`available` integer NOT NULL,
	`event_id` text NOT NULL,
	PRIMARY KEY(`sku`, `warehouse`)
);
