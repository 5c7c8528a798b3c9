/*
 * Consumer side of scraper.items (group content-manager): each ScrapedItem is upserted into
 * scraped_items, the service's own projection, so that briefs can use scraped items as sources
 * (cm_op_create resolves their text). An upsert of the item's latest state is idempotent by
 * itself, so no inbox claim is needed; malformed records are dead-lettered.
 */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "contentengine/v1/scraper.pb-c.h"

typedef struct scraped_ctx {
    cm_app *app;
    bus_consumer *c;
    const bus_message *m;
} scraped_ctx;

static void on_upserted(const db_result *r, void *data)
{
    scraped_ctx *sc = data;
    if (db_result_ok(r)) {
        core_counter_add(sc->app->m_scraped, 1, "stored");
        bus_done(sc->c, sc->m, BUS_OK, NULL);
    } else {
        bus_done(sc->c, sc->m, BUS_RETRY, db_result_error(r));
    }
    free(sc);
}

void cm_scraped_on_message(bus_consumer *c, const bus_message *m, cm_app *app)
{
    Contentengine__V1__ScrapedItem *it =
        contentengine__v1__scraped_item__unpack(NULL, m->value_len, m->value);
    core_uuid u;
    const char *why = NULL;
    if (!it)
        why = "not a ScrapedItem";
    else if (!it->item_id || !core_uuid_parse(it->item_id, &u))
        why = "item_id is not a UUID";
    else if (!it->source_id || !*it->source_id)
        why = "no source_id";
    else if (!it->text || !*it->text)
        why = "no text";
    if (why) {
        core_counter_add(app->m_scraped, 1, "malformed");
        bus_done(c, m, BUS_FAIL, why);
        if (it) contentengine__v1__scraped_item__free_unpacked(it, NULL);
        return;
    }
    const char *url = it->canonical_url && *it->canonical_url ? it->canonical_url : it->url;
    const char *params[] = {it->item_id, it->source_id, url ? url : "", it->title ? it->title : "",
                            it->text};
    scraped_ctx *sc = core_xcalloc(1, sizeof *sc);
    *sc = (scraped_ctx){app, c, m};
    db_query(app->db,
             "INSERT INTO scraped_items (id, source_id, url, title, text) "
             "VALUES ($1::uuid, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET "
             "source_id = EXCLUDED.source_id, url = EXCLUDED.url, title = EXCLUDED.title, "
             "text = EXCLUDED.text, received_at = now()",
             5, params, on_upserted, sc);
    contentengine__v1__scraped_item__free_unpacked(it, NULL);
}
