# The content engine: one Makefile builds every library, tool, service and test into $(BUILD).
#
#   make            release build into build/
#   make test       installs what is missing, builds with ASan+UBSan into build/asan, starts
#                   Kafka and PostgreSQL if they are not running, runs every test
#   make up / down  the whole local stack on loopback (data and logs under var/)
#   make bench      every benchmark (scripts/bench-*.sh; BENCH_ONLY="bus gateway" for some)
#   make fmt / lint clang-format; format check, banned functions
#
# Layout it discovers by itself (nobody edits this file to add code):
#   libs/<name>/<name>.h, libs/<name>/*.c      -> $(BUILD)/lib/lib<name>.a
#   libs/<name>/tests/test_*.c                 -> $(BUILD)/tests/<name>/test_*   (unit tests)
#   libs/<name>/bin/<tool>.c                   -> $(BUILD)/bin/<tool>
#   services/<svc>/*.c (with main.c)           -> $(BUILD)/bin/<svc>
#   services/<svc>/tests/test_*.c              -> $(BUILD)/tests/<svc>/test_* (domain unit tests)
#   tests/integration/*.c                      -> $(BUILD)/tests/integration/*
#   tests/support/*.c                          -> linked into every test program
#   tests/programs/*.c                         -> $(BUILD)/tests/programs/* (spawned by tests)
#   proto/**/*.proto                           -> protoc-c -> $(BUILD)/lib/libevents.a
#   proto/topics.catalog                       -> $(BUILD)/gen/topics.h, catalog.c (in libbus.a)
#   services/dashboard (npm)                   -> build/dashboard (served by the gateway)

BUILD ?= build
SAN ?= 0
CC ?= cc
# Debian's gcc; `cc` is the default, kept explicit so the sanitizer runtime matches.
ifeq ($(origin CC),default)
CC := gcc
endif

PKGS := libuv libh2o rdkafka libpq libcurl libsodium jansson libprotobuf-c zlib gumbo expat
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# gumbo from its static archive when there is one: in the shared library its functions call
# one another through the PLT, which costs 15% of its parse time
GUMBO_LIB := $(or $(wildcard $(shell pkg-config --variable=libdir gumbo 2>/dev/null)/libgumbo.a),-lgumbo)
PKG_LIBS := $(shell pkg-config --libs $(filter-out gumbo,$(PKGS)) 2>/dev/null) $(GUMBO_LIB) -lwslay -lm

CSTD := -std=c17 -D_GNU_SOURCE
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN := -fsanitize=address,undefined
CPPDEFS := -DCORE_TEST_BUILD=1
else
OPT := -O2 -g
LDSAN :=
CPPDEFS :=
# subscriber-manager's CSV import allocates and frees millions of small blocks across threads
# (its thread-pool workers; librdkafka's broker thread frees the messages the loop produced):
# with jemalloc, as Redis links it, the service spent a tenth less CPU on a million-row import
# than with glibc's malloc, at the same idle memory. Not under the sanitizers: they bring their
# own allocator.
subscriber-manager_LIBS := -ljemalloc
endif

LIB_NAMES := $(sort $(notdir $(patsubst %/,%,$(dir $(wildcard libs/*/*.h)))))
# Dependents before their dependencies; --start-group makes the order forgiving anyway.
LIB_ORDER := http db bus httpc auth events core
LIB_LINK := $(foreach l,$(LIB_ORDER),$(if $(filter $(l),$(LIB_NAMES) events),$(BUILD)/lib/lib$(l).a))

GEN := $(BUILD)/gen
INCLUDES := $(foreach l,$(LIB_NAMES),-Ilibs/$(l)) -I$(GEN) -I$(GEN)/proto -Itests/support
CFLAGS_ALL = $(CSTD) $(WARN) $(OPT) $(CPPDEFS) $(INCLUDES) $(PKG_CFLAGS) -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS_ALL = $(LDSAN) $(EXTRA_LDFLAGS)
LINK_LIBS = -Wl,--start-group $(LIB_LINK) -Wl,--end-group $(PKG_LIBS)

# ---------------------------------------------------------------- protobuf + catalog
PROTOS := $(shell find proto -name '*.proto' 2>/dev/null | sort)
PROTO_C := $(patsubst proto/%.proto,$(GEN)/proto/%.pb-c.c,$(PROTOS))
PROTO_H := $(PROTO_C:.c=.h)
PROTO_O := $(patsubst $(GEN)/%.c,$(BUILD)/obj/gen/%.o,$(PROTO_C))

$(GEN)/proto/%.pb-c.c $(GEN)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)/proto
	protoc-c --proto_path=proto --c_out=$(GEN)/proto $<

# One run writes both files (grouped target, GNU make >= 4.3).
$(GEN)/catalog.c $(GEN)/topics.h &: proto/topics.catalog scripts/gen-catalog.sh
	scripts/gen-catalog.sh proto/topics.catalog $(GEN)

# Generated headers every object may include: build them before compiling anything.
GEN_H := $(PROTO_H) $(GEN)/topics.h

$(BUILD)/obj/gen/%.o: $(GEN)/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(OPT) $(CPPDEFS) $(INCLUDES) $(PKG_CFLAGS) -Wall -Wextra -Werror -c $< -o $@

$(BUILD)/lib/libevents.a: $(PROTO_O)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---------------------------------------------------------------- libraries
define LIB_template
$(1)_SRC := $$(wildcard libs/$(1)/*.c)
$(1)_OBJ := $$(patsubst %.c,$(BUILD)/obj/%.o,$$($(1)_SRC))
$(if $(filter bus,$(1)),$(1)_OBJ += $(BUILD)/obj/gen/catalog.o)
$(BUILD)/lib/lib$(1).a: $$($(1)_OBJ)
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach l,$(LIB_NAMES),$(eval $(call LIB_template,$(l))))
LIBS_A := $(LIB_LINK)

$(BUILD)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# ---------------------------------------------------------------- tools, services
TOOL_SRC := $(wildcard libs/*/bin/*.c)
TOOLS := $(foreach t,$(TOOL_SRC),$(BUILD)/bin/$(basename $(notdir $(t))))
define TOOL_template
$(BUILD)/bin/$(basename $(notdir $(1))): $(patsubst %.c,$(BUILD)/obj/%.o,$(1)) $$(LIBS_A)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS_ALL) $$< $$(LINK_LIBS) -o $$@
endef
$(foreach t,$(TOOL_SRC),$(eval $(call TOOL_template,$(t))))

SERVICE_NAMES := $(notdir $(patsubst %/main.c,%,$(wildcard services/*/main.c)))
SERVICES := $(addprefix $(BUILD)/bin/,$(SERVICE_NAMES))
define SERVICE_template
$(1)_OBJ := $$(patsubst %.c,$(BUILD)/obj/%.o,$$(wildcard services/$(1)/*.c))
$(BUILD)/bin/$(1): $$($(1)_OBJ) $$(LIBS_A)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS_ALL) $$($(1)_OBJ) $$(LINK_LIBS) $$($(1)_LIBS) -o $$@
endef
$(foreach s,$(SERVICE_NAMES),$(eval $(call SERVICE_template,$(s))))

# ---------------------------------------------------------------- tests
SUPPORT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/support/*.c))
UNIT_SRC := $(wildcard libs/*/tests/test_*.c)
UNIT_TESTS := $(foreach t,$(UNIT_SRC),$(BUILD)/tests/$(word 2,$(subst /, ,$(t)))/$(basename $(notdir $(t))))
INTEG_SRC := $(wildcard tests/integration/*.c)
INTEG_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRC))
# A library's unit tests link only that library and what it builds on, so one library's
# tests never wait for another's code.
DEPS_core := core
DEPS_http := http core
DEPS_httpc := httpc core
DEPS_bus := bus events core
DEPS_db := db bus events core
DEPS_auth := auth core
define TEST_template
$(2): $(patsubst %.c,$(BUILD)/obj/%.o,$(1)) $$(SUPPORT_OBJ) $(3)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS_ALL) $$< $$(SUPPORT_OBJ) -Wl,--start-group $(3) -Wl,--end-group $$(PKG_LIBS) -lcmocka -o $$@
endef
unit_lib = $(word 2,$(subst /, ,$(1)))
unit_deps = $(foreach l,$(or $(DEPS_$(call unit_lib,$(1))),$(LIB_ORDER)),$(BUILD)/lib/lib$(l).a)
$(foreach t,$(UNIT_SRC),$(eval $(call TEST_template,$(t),$(BUILD)/tests/$(call unit_lib,$(t))/$(basename $(notdir $(t))),$(call unit_deps,$(t)))))
$(foreach t,$(INTEG_SRC),$(eval $(call TEST_template,$(t),$(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(t)),$(LIBS_A))))
# A service's unit tests link its domain files (everything but main.c) and every library.
SVC_UNIT_SRC := $(wildcard services/*/tests/test_*.c)
SVC_UNIT_TESTS := $(foreach t,$(SVC_UNIT_SRC),$(BUILD)/tests/$(call unit_lib,$(t))/$(basename $(notdir $(t))))
svc_domain_obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out %/main.c,$(wildcard services/$(1)/*.c)))
$(foreach t,$(SVC_UNIT_SRC),$(eval $(call TEST_template,$(t),$(BUILD)/tests/$(call unit_lib,$(t))/$(basename $(notdir $(t))),$(call svc_domain_obj,$(call unit_lib,$(t))) $(LIBS_A))))
# Programs the integration tests spawn (a relay to kill mid-batch, a config probe): not tests.
PROG_SRC := $(wildcard tests/programs/*.c)
PROGS := $(patsubst tests/programs/%.c,$(BUILD)/tests/programs/%,$(PROG_SRC))
$(foreach t,$(PROG_SRC),$(eval $(call TEST_template,$(t),$(patsubst tests/programs/%.c,$(BUILD)/tests/programs/%,$(t)),$(LIBS_A))))

# ---------------------------------------------------------------- dashboard
# services/dashboard (Vite, React, TypeScript; no main.c, so not a C service) builds into
# build/dashboard, which the gateway serves at / (GATEWAY_STATIC_DIR). One build for every C
# variant: it has nothing to sanitize. Needs node and npm; without them it is skipped.
# `npm ci` runs only when node_modules is missing or the lockfile changed (the stamp).
DASH := services/dashboard
DASH_OUT ?= build/dashboard
DASH_STAMP := $(DASH)/node_modules/.ci-stamp
DASH_SRC := $(shell find $(DASH)/src $(DASH)/public -type f ! -name '*.test.ts' 2>/dev/null) \
	$(wildcard $(DASH)/index.html $(DASH)/vite.config.ts $(DASH)/tsconfig.json)
ifneq ($(shell command -v npm 2>/dev/null),)
DASHBOARD := $(DASH_OUT)/index.html
# test runners (cmocka-style summary lines for scripts/test.sh): vitest with the unit tests,
# the browser tests with the integration tests (they need Kafka, PostgreSQL and the services)
DASH_TESTS := $(BUILD)/tests/dashboard/test_unit $(BUILD)/tests/integration/dashboard_browser
endif

$(DASH_STAMP): $(DASH)/package-lock.json $(DASH)/package.json
	cd $(DASH) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $@

# built beside and swapped in whole, so a running gateway never reloads half a build
$(DASH_OUT)/index.html: $(DASH_STAMP) $(DASH_SRC)
	rm -rf $(DASH_OUT).new
	cd $(DASH) && npm run --silent build -- --outDir $(abspath $(DASH_OUT)).new --emptyOutDir
	rm -rf $(DASH_OUT) && mv $(DASH_OUT).new $(DASH_OUT)

$(BUILD)/tests/dashboard/test_unit: $(DASH)/tests/unit.mjs $(DASH_STAMP)
$(BUILD)/tests/integration/dashboard_browser: $(DASH)/tests/browser.mjs $(DASH_STAMP)
$(DASH_TESTS):
	@mkdir -p $(dir $@)
	printf '#!/bin/sh\nexec node "%s" "$$@"\n' "$(abspath $<)" >$@
	chmod 755 $@

# ---------------------------------------------------------------- targets
.DEFAULT_GOAL := all
# Generated sources are kept, not deleted as intermediates.
.SECONDARY:
.PHONY: all libs tests test up down bench fmt lint deps clean

all: $(LIBS_A) $(TOOLS) $(SERVICES) $(DASHBOARD)
libs: $(LIBS_A)
tests: all $(UNIT_TESTS) $(SVC_UNIT_TESTS) $(INTEG_TESTS) $(PROGS) $(DASH_TESTS)

deps:
	scripts/install-deps.sh

# The README's test command. Builds the sanitizer variant itself.
test:
	scripts/test.sh

up:
	scripts/up.sh

down:
	scripts/down.sh

bench:
	scripts/bench.sh

C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null; git ls-files --others --exclude-standard '*.c' '*.h' 2>/dev/null)

fmt:
	clang-format -i $(C_FILES)

lint:
	scripts/lint.sh

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
