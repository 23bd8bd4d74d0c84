CREATE TABLE `inventory_references` (
	`kind` text NOT NULL,
	`reference` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`kind`, `reference`)
);
--> statement-breakpoint
CREATE INDEX `inventory_reservations_reference` ON `inventory_reservations` (`reference`);