CREATE TABLE "inventory_references" (
	"kind" text NOT NULL,
	"reference" text NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "inventory_references_kind_reference_pk" PRIMARY KEY("kind","reference")
);
--> statement-breakpoint
CREATE INDEX "inventory_reservations_reference" ON "inventory_reservations" USING btree ("reference");