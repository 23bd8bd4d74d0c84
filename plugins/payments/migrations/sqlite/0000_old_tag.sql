CREATE TABLE `payments_events` (
	`id` text PRIMARY KEY NOT NULL,
	`payment_id` text NOT NULL,
	`kind` text NOT NULL,
	`amount` integer NOT NULL,
	`detail` text,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `payments_events_payment` ON `payments_events` (`payment_id`,`id`);--> statement-breakpoint
CREATE TABLE `payments_operations` (
	`key` text PRIMARY KEY NOT NULL,
	`payment_id` text NOT NULL,
	`action` text NOT NULL,
	`amount` integer NOT NULL,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `payments_payments` (
	`id` text PRIMARY KEY NOT NULL,
	`reference` text NOT NULL,
	`provider` text NOT NULL,
	`authorize_key` text NOT NULL,
	`status` text NOT NULL,
	`amount` integer NOT NULL,
	`currency` text NOT NULL,
	`captured` integer DEFAULT 0 NOT NULL,
	`refunded` integer DEFAULT 0 NOT NULL,
	`provider_ref` text,
	`lease_until` integer NOT NULL,
	`void_pending` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `payments_payments_authorize_key` ON `payments_payments` (`authorize_key`);--> statement-breakpoint
CREATE INDEX `payments_payments_reference` ON `payments_payments` (`reference`);--> statement-breakpoint
CREATE INDEX `payments_payments_void_pending` ON `payments_payments` (`void_pending`,`status`);--> statement-breakpoint
CREATE TABLE `payments_sandbox_authorizations` (
	`id` text PRIMARY KEY NOT NULL,
	`key` text NOT NULL,
	`status` text NOT NULL,
	`amount` integer NOT NULL,
	`captured` integer DEFAULT 0 NOT NULL,
	`refunded` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `payments_sandbox_authorizations_key` ON `payments_sandbox_authorizations` (`key`);--> statement-breakpoint
CREATE TABLE `payments_sandbox_requests` (
	`key` text PRIMARY KEY NOT NULL,
	`answer` text NOT NULL,
	`at` integer NOT NULL
);
