-- The seed's MediaAsset table (contract 3 of DESIGN.md). Written so that it also
-- adopts a table the seed application created before: IF NOT EXISTS everywhere.
CREATE TABLE IF NOT EXISTS media_assets (
    id               uuid PRIMARY KEY,
    user_id          text NOT NULL,
    name             text NOT NULL,
    file_size        bigint CHECK (file_size IS NULL OR file_size >= 0),
    file_type        text CHECK (file_type IN ('image', 'video', 'audio')),
    s3_key           text,
    thumbnail_s3_key text,
    status           text NOT NULL DEFAULT 'uploading'
                     CHECK (status IN ('uploading', 'ready', 'failed')),
    checksum         text,
    file_metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    folder_id        uuid,
    tags             text[] NOT NULL DEFAULT '{}',
    is_deleted       boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS media_assets_user_created_idx
    ON media_assets (user_id, created_at DESC);

-- The operator's sweep looks for rows of imports that were deleted unseen.
CREATE INDEX IF NOT EXISTS media_assets_uploading_idx
    ON media_assets (id) WHERE status = 'uploading';
