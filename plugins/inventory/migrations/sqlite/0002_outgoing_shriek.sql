DROP INDEX `inventory_readings_device`;--> statement-breakpoint
CREATE INDEX `inventory_readings_refused` ON `inventory_readings` (`device_id`,`id`) WHERE seq IS NULL;