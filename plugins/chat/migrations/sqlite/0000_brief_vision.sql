CREATE TABLE `chat_agents` (
	`user_id` text PRIMARY KEY NOT NULL,
	`status` text NOT NULL,
	`chosen` text NOT NULL,
	`load` integer DEFAULT 0 NOT NULL,
	`last_assigned` integer DEFAULT 0 NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `chat_canned_responses` (
	`id` text PRIMARY KEY NOT NULL,
	`shortcut` text NOT NULL,
	`title` text NOT NULL,
	`body` text NOT NULL,
	`created_by` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `chat_canned_shortcut` ON `chat_canned_responses` (`shortcut`);--> statement-breakpoint
CREATE TABLE `chat_connections` (
	`socket_id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`connected_at` integer NOT NULL,
	`expires_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `chat_connections_user` ON `chat_connections` (`user_id`,`expires_at`);--> statement-breakpoint
CREATE INDEX `chat_connections_expiry` ON `chat_connections` (`expires_at`);--> statement-breakpoint
CREATE TABLE `chat_conversations` (
	`id` text PRIMARY KEY NOT NULL,
	`customer_id` text NOT NULL,
	`agent_id` text,
	`status` text NOT NULL,
	`subject` text,
	`channel` text,
	`external_user_id` text,
	`last_seq` integer DEFAULT 0 NOT NULL,
	`queued_at` integer NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`assigned_at` integer,
	`closed_at` integer,
	`last_message_at` integer
);
--> statement-breakpoint
CREATE INDEX `chat_conversations_queue` ON `chat_conversations` (`status`,`queued_at`);--> statement-breakpoint
CREATE INDEX `chat_conversations_agent` ON `chat_conversations` (`agent_id`,`status`);--> statement-breakpoint
CREATE INDEX `chat_conversations_customer` ON `chat_conversations` (`customer_id`,`id`);--> statement-breakpoint
CREATE UNIQUE INDEX `chat_conversations_external` ON `chat_conversations` (`channel`,`external_user_id`);--> statement-breakpoint
CREATE TABLE `chat_deliveries` (
	`id` text PRIMARY KEY NOT NULL,
	`message_id` text NOT NULL,
	`conversation_id` text NOT NULL,
	`channel` text NOT NULL,
	`external_user_id` text NOT NULL,
	`body` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`next_attempt_at` integer NOT NULL,
	`lease_until` integer,
	`delivered_at` integer,
	`failed_at` integer,
	`last_error` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `chat_deliveries_due` ON `chat_deliveries` (`delivered_at`,`failed_at`,`next_attempt_at`);--> statement-breakpoint
CREATE UNIQUE INDEX `chat_deliveries_message` ON `chat_deliveries` (`message_id`);--> statement-breakpoint
CREATE TABLE `chat_messages` (
	`id` text PRIMARY KEY NOT NULL,
	`conversation_id` text NOT NULL,
	`seq` integer NOT NULL,
	`sender_id` text NOT NULL,
	`body` text NOT NULL,
	`client_id` text NOT NULL,
	`canned_id` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `chat_messages_client` ON `chat_messages` (`sender_id`,`client_id`);--> statement-breakpoint
CREATE UNIQUE INDEX `chat_messages_seq` ON `chat_messages` (`conversation_id`,`seq`);--> statement-breakpoint
CREATE TABLE `chat_read_markers` (
	`conversation_id` text NOT NULL,
	`user_id` text NOT NULL,
	`message_id` text NOT NULL,
	`seq` integer NOT NULL,
	`at` integer NOT NULL,
	PRIMARY KEY(`conversation_id`, `user_id`)
);
