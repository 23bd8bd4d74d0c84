CREATE TABLE `tessera_dead_letters` (
	`id` text PRIMARY KEY NOT NULL,
	`consumer` text NOT NULL,
	`event_id` text NOT NULL,
	`type` text NOT NULL,
	`source` text NOT NULL,
	`payload` text NOT NULL,
	`headers` text NOT NULL,
	`occurred_at` integer NOT NULL,
	`error` text NOT NULL,
	`attempts` integer NOT NULL,
	`failed_at` integer NOT NULL,
	`replayed_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `tessera_dead_letters_consumer_event` ON `tessera_dead_letters` (`consumer`,`event_id`);--> statement-breakpoint
CREATE TABLE `tessera_outbox` (
	`id` text PRIMARY KEY NOT NULL,
	`type` text NOT NULL,
	`source` text NOT NULL,
	`payload` text NOT NULL,
	`headers` text NOT NULL,
	`occurred_at` integer NOT NULL,
	`published_at` integer,
	`lease_until` integer
);
--> statement-breakpoint
CREATE INDEX `tessera_outbox_pending` ON `tessera_outbox` (`published_at`,`id`);--> statement-breakpoint
CREATE TABLE `tessera_processed_events` (
	`consumer` text NOT NULL,
	`event_id` text NOT NULL,
	`processed_at` integer NOT NULL,
	PRIMARY KEY(`consumer`, `event_id`)
);
