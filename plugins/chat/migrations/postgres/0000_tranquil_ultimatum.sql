CREATE TABLE "chat_agents" (
	"user_id" text PRIMARY KEY NOT NULL,
	"status" text NOT NULL,
	"chosen" text NOT NULL,
	"load" integer DEFAULT 0 NOT NULL,
	"last_assigned" bigint DEFAULT 0 NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "chat_canned_responses" (
	"id" text PRIMARY KEY NOT NULL,
	"shortcut" text NOT NULL,
	"title" text NOT NULL,
	"body" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "chat_connections" (
	"socket_id" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"connected_at" timestamp (3) with time zone NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "chat_conversations" (
	"id" text PRIMARY KEY NOT NULL,
	"customer_id" text NOT NULL,
	"agent_id" text,
	"status" text NOT NULL,
	"subject" text,
	"channel" text,
	"external_user_id" text,
	"last_seq" integer DEFAULT 0 NOT NULL,
	"queued_at" timestamp (3) with time zone NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	"assigned_at" timestamp (3) with time zone,
	"closed_at" timestamp (3) with time zone,
	"last_message_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE TABLE "chat_deliveries" (
	"id" text PRIMARY KEY NOT NULL,
	"message_id" text NOT NULL,
	"conversation_id" text NOT NULL,
	"channel" text NOT NULL,
	"external_user_id" text NOT NULL,
	"body" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp (3) with time zone NOT NULL,
	"lease_until" timestamp (3) with time zone,
	"delivered_at" timestamp (3) with time zone,
	"failed_at" timestamp (3) with time zone,
	"last_error" text,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "chat_messages" (
	"id" text PRIMARY KEY NOT NULL,
	"conversation_id" text NOT NULL,
	"seq" integer NOT NULL,
	"sender_id" text NOT NULL,
	"body" text NOT NULL,
	"client_id" text NOT NULL,
	"canned_id" text,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "chat_read_markers" (
	"conversation_id" text NOT NULL,
	"user_id" text NOT NULL,
	"message_id" text NOT NULL,
	"seq" integer NOT NULL,
	"at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "chat_read_markers_conversation_id_user_id_pk" PRIMARY KEY("conversation_id","user_id")
);
--> statement-breakpoint
CREATE UNIQUE INDEX "chat_canned_shortcut" ON "chat_canned_responses" USING btree ("shortcut");--> statement-breakpoint
CREATE INDEX "chat_connections_user" ON "chat_connections" USING btree ("user_id","expires_at");--> statement-breakpoint
CREATE INDEX "chat_connections_expiry" ON "chat_connections" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "chat_conversations_queue" ON "chat_conversations" USING btree ("status","queued_at");--> statement-breakpoint
CREATE INDEX "chat_conversations_agent" ON "chat_conversations" USING btree ("agent_id","status");--> statement-breakpoint
CREATE INDEX "chat_conversations_customer" ON "chat_conversations" USING btree ("customer_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "chat_conversations_external" ON "chat_conversations" USING btree ("channel","external_user_id");--> statement-breakpoint
CREATE INDEX "chat_deliveries_due" ON "chat_deliveries" USING btree ("delivered_at","failed_at","next_attempt_at");--> statement-breakpoint
CREATE UNIQUE INDEX "chat_deliveries_message" ON "chat_deliveries" USING btree ("message_id");--> statement-breakpoint
CREATE UNIQUE INDEX "chat_messages_client" ON "chat_messages" USING btree ("sender_id","client_id");--> statement-breakpoint
CREATE UNIQUE INDEX "chat_messages_seq" ON "chat_messages" USING btree ("conversation_id","seq");