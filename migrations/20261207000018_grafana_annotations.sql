-- Grafana annotations made for outages and maintenance windows, per Grafana (its base URL). The
-- API has no idempotency key, so the id Grafana returns is stored at once: later events PATCH it
-- instead of creating a second annotation. `key` names what the annotation is for
-- (`outage:<id>` for an outage's region, `outage:<id>:update:<at>` for an update's point,
-- `maintenance:<id>` for a window's region); the same key is also a tag on the annotation, so an
-- annotation whose id was lost with the answer is found again before creating another.
CREATE TABLE grafana_annotations (
    target         TEXT NOT NULL,
    key            TEXT NOT NULL,
    annotation_id  BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (target, key)
);
