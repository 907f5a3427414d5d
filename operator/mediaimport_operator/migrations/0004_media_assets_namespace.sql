-- Which namespace's MediaImport a row came from: the API serves the rows of the namespaces
-- it is configured for, and never an import another namespace made for one of its users.
-- Rows the seed application made itself (no import) have none.
ALTER TABLE media_assets ADD COLUMN IF NOT EXISTS namespace text;

UPDATE media_assets
   SET namespace = file_metadata -> 'mediaimport' ->> 'namespace'
 WHERE namespace IS NULL
   AND file_metadata -> 'mediaimport' ->> 'namespace' IS NOT NULL;

CREATE INDEX IF NOT EXISTS media_assets_user_namespace_created_idx
    ON media_assets (user_id, namespace, created_at DESC);
