-- An inspection log written by defectlens 0.3.0 (schema 5, commit a1ce78d's store.py), as `sqlite3 .dump` writes it.
BEGIN TRANSACTION;
CREATE TABLE inspections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_utc TEXT NOT NULL,
        source TEXT NOT NULL,
        client_name TEXT NOT NULL,
        image_sha256 TEXT NOT NULL,
        image_bytes INTEGER NOT NULL,
        width INTEGER,
        height INTEGER,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        prediction TEXT,
        probabilities TEXT,
        defect_probability REAL,
        threshold REAL,
        temperature REAL,
        model_id TEXT,
        latency_ms REAL,
        image_path TEXT,
        verdict TEXT,
        verdict_label TEXT,
        verdict_utc TEXT,
        comment TEXT,
        operator TEXT
    , warning TEXT NOT NULL DEFAULT '', ood_score REAL, gate_flagged INTEGER, station TEXT, captured_utc TEXT, part_id TEXT);
INSERT INTO "inspections" VALUES(1,'2026-12-05T18:49:46.172+00:00','web','a.png','aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',10,4,3,'ok','','defect','{"ok": 0.25, "defect": 0.75}',0.75,0.5,1.5,'m1',3.25,NULL,'confirmed','defect','2026-12-05T18:49:46.204+00:00',NULL,'ben','',1.5,0,NULL,NULL,NULL);
INSERT INTO "inspections" VALUES(2,'2026-12-05T18:49:46.174+00:00','inspector','b.png','bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',11,NULL,NULL,'needs_review','frame is almost uniform',NULL,'{}',NULL,NULL,NULL,'m1',NULL,NULL,'overridden','defect','2026-12-05T18:49:46.210+00:00',NULL,NULL,'',9.0,1,NULL,NULL,NULL);
INSERT INTO "inspections" VALUES(3,'2026-12-05T18:49:46.176+00:00','line','c.png','cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc',12,NULL,NULL,'ok','','ok','{"ok": 0.875, "defect": 0.125}',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'',NULL,NULL,'line-1','2026-12-01T10:00:00.000+00:00','P-1');
CREATE TABLE verdicts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        inspection_id INTEGER NOT NULL REFERENCES inspections (id),
        verdict TEXT NOT NULL,
        label TEXT,
        operator TEXT,
        comment TEXT,
        created_utc TEXT NOT NULL
    );
INSERT INTO "verdicts" VALUES(1,1,'overridden','ok','ana','dust','2026-12-05T18:49:46.176+00:00');
INSERT INTO "verdicts" VALUES(2,1,'confirmed','defect','ben',NULL,'2026-12-05T18:49:46.204+00:00');
INSERT INTO "verdicts" VALUES(3,2,'overridden','defect',NULL,NULL,'2026-12-05T18:49:46.210+00:00');
CREATE INDEX inspections_created ON inspections (created_utc);
CREATE INDEX inspections_prediction ON inspections (prediction);
CREATE INDEX inspections_model ON inspections (model_id);
CREATE INDEX inspections_status ON inspections (status);
CREATE INDEX inspections_station ON inspections (station);
CREATE INDEX verdicts_inspection ON verdicts (inspection_id);
CREATE TRIGGER verdicts_no_update BEFORE UPDATE ON verdicts
        BEGIN SELECT RAISE(ABORT, 'the verdict history is append-only'); END;
CREATE TRIGGER verdicts_no_delete BEFORE DELETE ON verdicts
        BEGIN SELECT RAISE(ABORT, 'the verdict history is append-only'); END;
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('verdicts',3);
INSERT INTO "sqlite_sequence" VALUES('inspections',3);
COMMIT;
PRAGMA user_version = 5;
