/* subscriber-manager: the service's shared state and the helpers its handlers share. */
#ifndef SM_H
#define SM_H

#include "auth.h"
#include "bus.h"
#include "core.h"
#include "db.h"
#include "http.h"
#include "pii.h"

#define SM_SERVICE "subscriber-manager"
#define SM_ISSUER  "subscriber-manager"

typedef struct sm_app {
    uv_loop_t *loop;
    http_server *http;
    db_pool *db;
    db_relay *relay;
    core_signals *signals;
    const char *brokers;
    const char *source;
    bool stopping;
    int exit_code;
    /* keys (never logged) */
    auth_signer signer;
    sm_keys keys;
    /* auth settings */
    int64_t access_ttl_s;
    int64_t refresh_ttl_s;
    int64_t link_ttl_s;  /* confirm links */
    int64_t unsub_ttl_s; /* unsubscribe and preference links */
    auth_pwhash_params pwhash;
    auth_throttle *throttle_account;
    auth_throttle *throttle_addr;
    auth_buckets *public_buckets;
    const char *admin_email;
    const char *admin_password;
    const char *public_url; /* base of confirm / unsubscribe links */
    const char *name;       /* SERVICE_NAME: also the outbox relay's name */
    int64_t import_max_rows;
    int import_batch;
    int import_writers; /* batches of one import written concurrently */
    int outbox_batch;
    /* metrics */
    core_metric *m_logins;
    core_metric *m_events;
    core_metric *m_import_rows;
} sm_app;

#define SM_IMPORT_WRITERS_MAX 8

typedef struct sm_op sm_op;

/* ---------------------------------------------------------------- responses */

void sm_problem(http_req *req, int status, const char *detail);
void sm_invalid(http_req *req, const char *field, const char *detail);
void sm_unavailable(http_req *req, const db_result *r);
/* The {name} path segment as a canonical UUID; answers 400 and returns false when malformed. */
bool sm_path_uuid(http_req *req, const char *name, char out[CORE_UUID_STRLEN + 1]);
/* limit query parameter (1..max, default def); answers 400 and returns false when malformed. */
bool sm_query_limit(http_req *req, int def, int max, int *out);
/* Verifies the access token again and returns its claims (the middleware checked the role). */
bool sm_identity(http_req *req, sm_app *app, auth_claims *out);
/* A JSON array of UUIDs (at most max) as a PostgreSQL array literal "{a,b}" (*literal) and
 * one by one (*ids, NULL-terminated; both malloc'd, free with sm_ids_free). false when the value
 * is not such an array. */
bool sm_uuid_list(const json_t *arr, size_t max, char **literal, char ***ids, size_t *n);
void sm_ids_free(char **ids, size_t n);

/* Read-only queries answered straight from their rows: every row through fn as
 * {"items": [...]}, or the first row (404 with not_found when there is none). */
typedef json_t *(*sm_row_fn)(const db_result *r, int row);
void sm_query_items(sm_app *app, http_req *req, const char *sql, int n, const char *const *vals,
                    sm_row_fn fn);
void sm_query_one(sm_app *app, http_req *req, const char *sql, int n, const char *const *vals,
                  sm_row_fn fn, const char *not_found);

/* sm_query_one for the {id} path segment ($1 of sql); 400 when it is not a UUID. */
void sm_get_by_id(sm_app *app, http_req *req, const char *sql, sm_row_fn fn, const char *not_found);

/* DELETE of one row by id (sql has $1 = the id) in a transaction; 404 with what when nothing was
 * deleted; after (may be NULL) queues one more statement (an event) before the commit. */
void sm_delete(sm_app *app, http_req *req, const char *id, const char *sql, const char *what,
               void (*after)(sm_op *op));

/* Registers a route that needs role (AUTH_ROLE_NONE: public). */
void sm_route(sm_app *app, const char *method, const char *pattern, auth_role role,
              http_handler_fn fn);

/* ---------------------------------------------------------------- transactions */

/*
 * One operation in one transaction, written as a step function: step(op, r) runs after BEGIN
 * (op->step 0, r NULL) and after every statement it queued with sm_q / sm_outbox (op->step
 * counts completed statements), and ends the op with sm_commit / sm_fail. A failed statement
 * ends it for you: rollback and 409 (unique violation), 400 (bad value) or 503.
 */
typedef void (*sm_step_fn)(sm_op *op, const db_result *r);
struct sm_op {
    sm_app *app;
    http_req *req; /* NULL for ops without a request */
    db_txn *txn;
    sm_step_fn step_fn;
    int step;
    int pending;     /* statements queued and not yet answered */
    int status;      /* success status */
    int fail_status; /* commit, then answer this problem (e.g. reuse detection: revoke, 401) */
    json_t *reply;
    void *ctx;
    void (*ctx_free)(void *ctx);
    void (*done)(sm_op *op, bool ok); /* ops without a request */
    char detail[256];
    char id[CORE_UUID_STRLEN + 1];
};

sm_op *sm_op_start(sm_app *app, http_req *req, sm_step_fn fn, void *ctx, void (*ctx_free)(void *));
/* sm_op_start for the entity id (copied to op->id) answering status on success. */
sm_op *sm_op_start_id(sm_app *app, http_req *req, sm_step_fn fn, void *ctx,
                      void (*ctx_free)(void *), const char *id, int status);
void sm_q(sm_op *op, const char *sql, int n, const char *const *vals);
/* Same with lengths and formats (1 = binary) per parameter, as db_txn_query_params. */
void sm_qb(sm_op *op, const char *sql, int n, const char *const *vals, const int *lengths,
           const int *formats);
/* COPY ... FROM STDIN with len bytes of data (db_txn_copy_in), as a statement of the op. */
void sm_copy(sm_op *op, const char *sql, const void *data, size_t len);
void sm_outbox(sm_op *op, const bus_record *rec);
/* Commits; on success answers op->status with op->reply (or 204 when NULL). */
void sm_commit(sm_op *op);
/* Rolls back and answers a problem. */
void sm_fail(sm_op *op, int status, const char *detail);

/* ---------------------------------------------------------------- subscriber events */

typedef struct sm_event {
    const char *subscriber_id;
    const char *kind; /* created, updated, confirmation_requested, confirmed, unsubscribed,
                         subscribed, erased, export_requested ... */
    const char *status;
    const char *const *list_ids;
    size_t nlists;
    const uint8_t *dek; /* NULL: no PII in the event */
    sm_sealer *sealer;  /* instead of dek: the subscriber's sealer (the import's seal phase) */
    const char *pii_json;
} sm_event;

/* Topics (SUBSCRIBER_EVENTS_TOPIC, IMPORT_PROGRESS_TOPIC; tests use their own). */
extern const char *sm_topic_events;
extern const char *sm_topic_imports;

/* Queues the SubscriberEvent into the op's transaction (outbox). */
void sm_event_add(sm_op *op, const sm_event *ev);
/* The event record for db_outbox_add outside an op (import); buf must be freed. */
void sm_event_record(const sm_event *ev, bus_record *rec, uint8_t **buf);
/* The CloudEvents type of an event kind: "contentengine.subscriber.<kind>.v1" (a constant for
 * the kinds this service emits, else a per-thread copy that outlives the record being built). */
#define SM_EVENT_TYPE(kind) "contentengine.subscriber." kind ".v1"
const char *sm_event_type(const char *kind);

/* Unsubscribe (erase false) or GDPR-erase subscriber id, answering req. */
void sm_subscriber_leave(sm_app *app, http_req *req, const char *id, bool erase);

/* ---------------------------------------------------------------- wiring */

void sm_auth_register(sm_app *app);
void sm_auth_bootstrap(sm_app *app); /* creates the first admin if none exists */
void sm_subscribers_register(sm_app *app);
void sm_lists_register(sm_app *app);
void sm_segments_register(sm_app *app);
void sm_consent_register(sm_app *app);
void sm_import_register(sm_app *app);
void sm_export_register(sm_app *app);

/* Common SQL pieces. */
#define SM_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The subscriber row (id, email, name decrypted) as the API shows it; NULL when the key does
 * not open (shredded). Columns: see sm_subscriber_cols. */
extern const char sm_subscriber_cols[];
/* The FROM clause those columns need (s: subscribers, k: subscriber_secrets). */
#define SM_SUBSCRIBER_FROM "subscribers s LEFT JOIN subscriber_secrets k ON k.subscriber_id = s.id"

/* A subscriber's personal data sealed for storage: fresh key when dek is NULL (then *dek_out
 * receives it), hex bytea texts for the parameters. */
typedef struct sm_sealed {
    uint8_t dek[SM_KEY_BYTES];
    core_buf index;                    /* uuid text (sm_blind_index_text) */
    core_buf email, name, wrapped, ip; /* "\\x..." texts; ip empty when none */
} sm_sealed;
void sm_seal_subscriber(sm_app *app, const char *id, const uint8_t *dek, const char *email,
                        const char *name, const char *ip, sm_sealed *out);
void sm_sealed_free(sm_sealed *s);
/* {"email","name"[,extra members]} for an event's encrypted_pii (malloc'd JSON). */
char *sm_pii_json(const char *email, const char *name, json_t *extra);
/* Signed link (confirm, unsubscribe, preferences) for a subscriber: malloc'd token. */
char *sm_link_token(sm_app *app, const char *purpose, const char *id);
json_t *sm_subscriber_json(sm_app *app, const db_result *r, int row);

#endif
