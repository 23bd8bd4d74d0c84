CREATE TABLE `auth_audit` (
	`id` text PRIMARY KEY NOT NULL,
	`type` text NOT NULL,
	`user_id` text,
	`email` text,
	`ip` text,
	`detail` text NOT NULL,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `auth_audit_type` ON `auth_audit` (`type`,`id`);--> statement-breakpoint
CREATE INDEX `auth_audit_user` ON `auth_audit` (`user_id`,`id`);--> statement-breakpoint
CREATE TABLE `auth_refresh_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`family_id` text NOT NULL,
	`user_id` text NOT NULL,
	`secret_hash` text NOT NULL,
	`expires_at` integer NOT NULL,
	`spent_at` integer,
	`revoked_at` integer,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `auth_refresh_tokens_family` ON `auth_refresh_tokens` (`family_id`);--> statement-breakpoint
CREATE INDEX `auth_refresh_tokens_user` ON `auth_refresh_tokens` (`user_id`);--> statement-breakpoint
CREATE TABLE `auth_users` (
	`id` text PRIMARY KEY NOT NULL,
	`email` text NOT NULL,
	`name` text NOT NULL,
	`password_hash` text NOT NULL,
	`roles` text NOT NULL,
	`disabled` integer DEFAULT false NOT NULL,
	`tokens_valid_after` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `auth_users_email` ON `auth_users` (`email`);