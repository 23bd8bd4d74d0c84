CREATE TABLE "tessera_dead_letters" (
	"id" text PRIMARY KEY NOT NULL,
	"consumer" text NOT NULL,
	"event_id" text NOT NULL,
	"type" text NOT NULL,
	"source" text NOT NULL,
	"payload" jsonb NOT NULL,
	"headers" jsonb NOT NULL,
	"occurred_at" timestamp (3) with time zone NOT NULL,
	"error" text NOT NULL,
	"attempts" integer NOT NULL,
	"failed_at" timestamp (3) with time zone NOT NULL,
	"replayed_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE TABLE "tessera_outbox" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"source" text NOT NULL,
	"payload" jsonb NOT NULL,
	"headers" jsonb NOT NULL,
	"occurred_at" timestamp (3) with time zone NOT NULL,
	"published_at" timestamp (3) with time zone,
	"lease_until" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE TABLE "tessera_processed_events" (
	"consumer" text NOT NULL,
	"event_id" text NOT NULL,
	"processed_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "tessera_processed_events_consumer_event_id_pk" PRIMARY KEY("consumer","event_id")
);
--> statement-breakpoint
CREATE UNIQUE INDEX "tessera_dead_letters_consumer_event" ON "tessera_dead_letters" USING btree ("consumer","event_id");--> statement-breakpoint
CREATE INDEX "tessera_outbox_pending" ON "tessera_outbox" USING btree ("published_at","id");