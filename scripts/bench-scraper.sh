#!/usr/bin/env bash
# `make bench` (BENCH_ONLY=scraper): the scraper against Scrapy (from PyPI) crawling the same
# generated site, at the same politeness settings, in one run.
#
#   site      BENCH_SCRAPER_PAGES (3000) generated article pages (~6 KB each, nav, sidebar,
#             footer and four paragraphs of distinct text), a sitemap listing them all and a
#             robots.txt that allows everything, served by Debian's nginx on loopback
#   scraper   build/bin/scraper (release), the real service on the real PostgreSQL and Kafka: a
#             sitemap source, POST /run; every page fetched, extracted (readability-style), deduped
#             and stored with its event in the outbox. Time: the run's started_at..finished_at.
#   scrapy    a SitemapSpider that fetches the same pages and yields title and paragraph text
#             (CSS selectors; no storage beyond a JSON-lines feed). Time: from Scrapy's own
#             start_time stat (engine start) to the spider's close.
#   both      concurrency BENCH_SCRAPER_CONCURRENCY (16) in all and per host, no delay, robots.txt
#             obeyed. Peak RSS: ru_maxrss of the process (getrusage of a waiting parent).
#
# Prints pages/s and peak RSS per round, the medians, and the ratios scraper/scrapy (pages/s,
# higher is better) and scrapy/scraper (RSS, higher is better). Goal (issue 5): >= 3x the pages
# per second at <= 1/5 of the RSS.
#
#   BENCH_ROUNDS (3)  BENCH_SCRAPER_PAGES (3000)  BENCH_SCRAPER_CONCURRENCY (16)
#   BENCH_PORT_BASE (18560: nginx, +1 the scraper)
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

ROUNDS="${BENCH_ROUNDS:-3}"
PAGES="${BENCH_SCRAPER_PAGES:-3000}"
CONC="${BENCH_SCRAPER_CONCURRENCY:-16}"
BASE="${BENCH_PORT_BASE:-18560}"
SITE_PORT="$BASE"
SVC_PORT=$((BASE + 1))
DIR="$VAR/bench-scraper"
VENV="$CACHE/venv-bench"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
[[ -x "$NGINX" ]] || die "nginx is not installed (Debian package nginx-light)"

if [[ ! -x "$VENV/bin/scrapy" ]]; then
    log "installing Scrapy from PyPI into ${VENV#"$ROOT"/}"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q scrapy || die "pip install scrapy failed"
fi
SCRAPY_VERSION="$("$VENV/bin/python" -c 'import scrapy; print(scrapy.__version__)')"

make -s -C "$ROOT" "$BUILD/bin/scraper" || die "the scraper does not build"
SCRAPER="$BINDIR/scraper"
scripts/infra.sh status >/dev/null 2>&1 || die "Kafka and PostgreSQL are not running (scripts/infra.sh up)"
DBURL="$(scripts/postgres.sh url scraper)"
service_env

for p in "$SITE_PORT" "$SVC_PORT"; do
    if port_listening "$p"; then die "port $p is in use (set BENCH_PORT_BASE)"; fi
done
rm -rf "$DIR"
mkdir -p "$DIR/site" "$DIR/nginx"

# ---------------------------------------------------------------- the site
python3 - "$DIR/site" "$PAGES" "$SITE_PORT" <<'PY'
import os, random, sys
root, n, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rnd = random.Random(5)
syl = ["ba", "ce", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu", "na", "pe", "ro", "su", "ta",
       "ve", "wi", "xo", "yu", "za", "bre", "clo", "dra", "fle", "gri", "pla", "sto", "tru"]
os.makedirs(os.path.join(root, "p"), exist_ok=True)
nav = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(12))
side = "".join(f'<li><a href="/p/{i:05d}.html">Popular story number {i}</a></li>' for i in range(10))
with open(os.path.join(root, "sitemap.xml"), "w") as sm:
    sm.write('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n')
    for i in range(n):
        paras = []
        for _ in range(4):
            words = [rnd.choice(syl) + rnd.choice(syl) for _ in range(rnd.randint(40, 70))]
            paras.append("<p>" + " ".join(words).capitalize() + ".</p>")
        html = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Story {i} | Bench Site</title>
<meta name="author" content="Writer {i % 37}"><meta property="article:published_time" content="2024-01-{1 + i % 28:02d}T10:00:00Z">
<link rel="canonical" href="http://127.0.0.1:{port}/p/{i:05d}.html"></head><body>
<header><a href="/">Bench Site</a><nav><ul>{nav}</ul></nav></header>
<main><article><h1>Story {i}</h1><div class="byline">By Writer {i % 37}</div><div class="entry-content">{''.join(paras)}</div></article>
<aside class="sidebar"><h3>Most read</h3><ul>{side}</ul></aside></main>
<footer><p>Copyright 2024 Bench Site. All rights reserved.</p></footer></body></html>"""
        with open(os.path.join(root, "p", f"{i:05d}.html"), "w") as f:
            f.write(html)
        sm.write(f"<url><loc>http://127.0.0.1:{port}/p/{i:05d}.html</loc></url>\n")
    sm.write("</urlset>\n")
with open(os.path.join(root, "robots.txt"), "w") as f:
    f.write("User-agent: *\nAllow: /\n")
PY

cat >"$DIR/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
error_log $DIR/nginx/error.log warn;
pid $DIR/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $DIR/nginx/body; proxy_temp_path $DIR/nginx/proxy;
  fastcgi_temp_path $DIR/nginx/fcgi; uwsgi_temp_path $DIR/nginx/uwsgi; scgi_temp_path $DIR/nginx/scgi;
  types { text/html html; application/xml xml; text/plain txt; }
  keepalive_requests 100000;
  server { listen 127.0.0.1:$SITE_PORT; root $DIR/site; }
}
EOF
"$NGINX" -c "$DIR/nginx/nginx.conf" -p "$DIR/nginx" >"$DIR/nginx/out.log" 2>&1 &
NGINX_PID=$!
SVC_PID=""
cleanup() {
    if [[ -n "$SVC_PID" ]]; then kill "$SVC_PID" 2>/dev/null || true; fi
    kill "$NGINX_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$SITE_PORT/robots.txt" >/dev/null && break; sleep 0.1; done

# Runs "$@" as a child and writes "<seconds> <max RSS KiB> <exit status>" to the file $RUSAGE_OUT.
cat >"$DIR/rusage.py" <<'PY'
import os, resource, subprocess, sys, time
t = time.time()
p = subprocess.Popen(sys.argv[2:])
try:
    rc = p.wait()
except KeyboardInterrupt:
    rc = p.wait()
with open(sys.argv[1], "w") as f:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    f.write(f"{time.time() - t:.3f} {ru.ru_maxrss} {rc} {ru.ru_utime + ru.ru_stime:.2f}\n")
PY

cat >"$DIR/spider.py" <<EOF
import json
import scrapy
from scrapy.spiders import SitemapSpider

class Bench(SitemapSpider):
    name = "bench"
    sitemap_urls = ["http://127.0.0.1:$SITE_PORT/sitemap.xml"]
    custom_settings = {
        "CONCURRENT_REQUESTS": $CONC, "CONCURRENT_REQUESTS_PER_DOMAIN": $CONC,
        "CONCURRENT_REQUESTS_PER_IP": 0, "DOWNLOAD_DELAY": 0, "ROBOTSTXT_OBEY": True,
        "AUTOTHROTTLE_ENABLED": False, "HTTPCACHE_ENABLED": False, "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING", "COOKIES_ENABLED": False, "RETRY_TIMES": 2,
        "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
        "FEEDS": {"$DIR/scrapy-items.jsonl": {"format": "jsonlines", "overwrite": True}},
    }

    def parse(self, response):
        yield {
            "url": response.url,
            "title": response.css("title::text").get(),
            "author": response.css('meta[name="author"]::attr(content)').get(),
            "text": "\n\n".join(p.strip() for p in response.css("article p::text").getall()),
        }

    def closed(self, reason):
        import datetime
        s = self.crawler.stats.get_stats()
        start = s["start_time"]
        now = datetime.datetime.now(start.tzinfo) if start.tzinfo else datetime.datetime.utcnow()
        with open("$DIR/scrapy-stats.json", "w") as f:
            json.dump({"elapsed": (now - start).total_seconds(),
                       "responses": s.get("downloader/response_count"),
                       "items": s.get("item_scraped_count")}, f)
EOF

api() { curl -fsS -H 'content-type: application/json' "$@"; }

run_scraper() { # prints "<pages/s> <rss KiB> <pages>"
    # shellcheck disable=SC2086 # SCRAPER_BENCH_ENV: extra NAME=value words, split on purpose
    env HTTP_PORT="$SVC_PORT" KAFKA_BROKERS="$KAFKA_BOOTSTRAP" DATABASE_URL="$DBURL" \
        MIGRATIONS_DIR="$ROOT/services/scraper/migrations" SCRAPER_ALLOW_PRIVATE=127.0.0.1/32 \
        SCRAPER_CONCURRENCY="$CONC" SCRAPER_PER_HOST_CONCURRENCY="$CONC" SCRAPER_DELAY=0 \
        SCRAPER_ROBOTS=true LOG_LEVEL=warn ${SCRAPER_BENCH_ENV:-} \
        python3 "$DIR/rusage.py" "$DIR/scraper.rusage" "$SCRAPER" >>"$DIR/scraper.log" 2>&1 &
    SVC_PID=$!
    for _ in $(seq 300); do curl -fs "http://127.0.0.1:$SVC_PORT/readyz" >/dev/null && break; sleep 0.1; done
    local src run state json
    src="$(api -X POST "http://127.0.0.1:$SVC_PORT/api/scraper/sources" \
        -d "{\"url\":\"http://127.0.0.1:$SITE_PORT/sitemap.xml\",\"kind\":\"sitemap\",\"paused\":true,\"max_items\":$PAGES}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
    run="$(api -X POST "http://127.0.0.1:$SVC_PORT/api/scraper/sources/$src/run" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
    while :; do
        json="$(api "http://127.0.0.1:$SVC_PORT/api/scraper/runs/$run")"
        state="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["state"])' "$json")"
        [[ "$state" == running ]] || break
        sleep 0.2
    done
    api -X DELETE "http://127.0.0.1:$SVC_PORT/api/scraper/sources/$src" >/dev/null || true
    # the service's own process tree ends here; rusage.py reports its peak RSS
    pkill -TERM -P "$SVC_PID" 2>/dev/null || true
    wait "$SVC_PID" || true
    SVC_PID=""
    python3 - "$json" "$DIR/scraper.rusage" <<'PY'
import datetime, json, sys
r = json.loads(sys.argv[1])
parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
secs = (parse(r["finished_at"]) - parse(r["started_at"])).total_seconds()
rss = int(open(sys.argv[2]).read().split()[1])
if r["state"] != "finished" or r["failed"]:
    print(f"warning: run {r['state']} with {r['failed']} failures: {r['error_summary'][:200]}", file=sys.stderr)
print(f"{r['fetched'] / secs:.1f} {rss} {r['fetched']} {r['new']}")
PY
}

run_scrapy() { # prints "<pages/s> <rss KiB> <pages>"
    (cd "$DIR" && python3 "$DIR/rusage.py" "$DIR/scrapy.rusage" "$VENV/bin/scrapy" runspider "$DIR/spider.py" \
        >>"$DIR/scrapy.log" 2>&1) || true
    python3 - "$DIR/scrapy-stats.json" "$DIR/scrapy.rusage" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rss = int(open(sys.argv[2]).read().split()[1])
print(f"{s['responses'] / s['elapsed']:.1f} {rss} {s['responses']} {s['items']}")
PY
}

log "bench: scraper vs Scrapy $SCRAPY_VERSION, $PAGES pages, concurrency $CONC, no delay, robots on, $ROUNDS rounds"
: >"$DIR/results"
for round in $(seq "$ROUNDS"); do
    if ((round % 2)); then
        a="$(run_scraper)"; b="$(run_scrapy)"
    else
        b="$(run_scrapy)"; a="$(run_scraper)"
    fi
    read -r a_pps a_rss a_pages a_items <<<"$a"
    read -r b_pps b_rss b_pages b_items <<<"$b"
    note "round $round: scraper $a_pps pages/s, peak RSS $((a_rss / 1024)) MiB ($a_pages responses, $a_items new items); scrapy $b_pps pages/s, peak RSS $((b_rss / 1024)) MiB ($b_pages responses, $b_items items)"
    echo "$a_pps $a_rss $b_pps $b_rss" >>"$DIR/results"
done
python3 - "$DIR/results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
a_pps, a_rss, b_pps, b_rss = med(0), med(1), med(2), med(3)
print(f"    medians: scraper {a_pps:.0f} pages/s, peak RSS {a_rss / 1024:.1f} MiB; "
      f"scrapy {b_pps:.0f} pages/s, peak RSS {b_rss / 1024:.1f} MiB")
print(f"    ratio pages/s scraper/scrapy = {a_pps / b_pps:.2f}x (goal >= 3x); "
      f"RSS scraper/scrapy = {a_rss / b_rss:.2f} (goal <= 0.20)")
PY
