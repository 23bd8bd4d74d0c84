CREATE TABLE "inventory_device_seqs" (
	"device_id" text PRIMARY KEY NOT NULL,
	"seq_high" bigint
);
--> statement-breakpoint
CREATE TABLE "inventory_movements_recent" (
	"part" integer NOT NULL,
	"id" text NOT NULL,
	"sku" text NOT NULL,
	"warehouse" text NOT NULL,
	"delta" integer NOT NULL,
	"on_hand_after" integer NOT NULL,
	"reason" text NOT NULL,
	"source" text NOT NULL,
	"at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "inventory_movements_recent_part_id_pk" PRIMARY KEY("part","id")
);
--> statement-breakpoint
CREATE TABLE "inventory_readings_recent" (
	"part" integer NOT NULL,
	"id" text NOT NULL,
	"device_id" text NOT NULL,
	"seq" bigint,
	"ts" bigint,
	"sku" text,
	"type" text,
	"value" integer,
	"status" text NOT NULL,
	"reason" text,
	"raw" text,
	"received_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "inventory_readings_recent_part_id_pk" PRIMARY KEY("part","id")
);
