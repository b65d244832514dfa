# mailedge — see README.md.  make | make test | make demo | make check-config | make bench
CC      ?= cc
PKGS    := wolfssl libev inih
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wformat=2 -Wno-format-nonliteral
CPPFLAGS += -Iproxy -Iprotocols

# wolfSSL: "bundled" (default) is Debian's wolfssl source package built by wolfssl/build.sh
# with the CPU's assembly speed-ups and linked statically; "system" is Debian's
# libwolfssl-dev (generic C, several times slower). See wolfssl/README.md.
WOLFSSL ?= bundled
WOLFSSL_DIR := build/wolfssl
ifeq ($(WOLFSSL),bundled)
WOLFSSL_STAMP    := $(WOLFSSL_DIR)/stamp
WOLFSSL_CPPFLAGS := -I$(WOLFSSL_DIR)/install/include -DMAILEDGE_WOLFSSL_BUNDLED
WOLFSSL_LIBS     := $(WOLFSSL_DIR)/install/lib/libwolfssl.a -lpthread
else ifeq ($(WOLFSSL),system)
WOLFSSL_STAMP    :=
WOLFSSL_CPPFLAGS :=
WOLFSSL_LIBS     := -lwolfssl
else
$(error WOLFSSL must be bundled or system, not "$(WOLFSSL)")
endif
CPPFLAGS += $(WOLFSSL_CPPFLAGS)
LIBS    := $(WOLFSSL_LIBS) -lev -linih -lm
# Everything compiled against wolfSSL's headers: rebuilt when WOLFSSL changes or the bundled
# library is rebuilt.
WOLFSSL_DEPS := build/wolfssl-mode $(WOLFSSL_STAMP)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

PROXY_SRC := proxy/buffer.c proxy/log.c proxy/config.c proxy/tls.c proxy/relay.c \
             proxy/backend.c proxy/proxyproto.c proxy/dialogue.c proxy/probe.c proxy/session.c \
             proxy/session_relay.c proxy/session_backend.c proxy/listener.c
SMTP_SRC  := protocols/smtp.c protocols/smtp_relay.c
IMAP_SRC  := protocols/imap.c protocols/imap_relay.c
POP3_SRC  := protocols/pop3.c
PROTO_SRC := protocols/protocol.c protocols/registry.c $(SMTP_SRC) $(IMAP_SRC) $(POP3_SRC)
LIB_SRC   := $(PROXY_SRC) $(PROTO_SRC)
HDRS      := $(wildcard proxy/*.h protocols/*.h)

B  := build
BA := build/asan

.PHONY: all asan deps certs test unit integration demo clean distclean check-config fuzz \
        format format-check wolfssl wolfssl-bench FORCE bench bench-deps bench-tools
all: $(B)/mailedge

$(B)/mailedge: proxy/main.c $(LIB_SRC) $(HDRS) $(WOLFSSL_DEPS) | $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) -o $@ proxy/main.c $(LIB_SRC) $(LIBS)

asan: $(BA)/mailedge
$(BA)/mailedge: proxy/main.c $(LIB_SRC) $(HDRS) $(WOLFSSL_DEPS) | $(BA)
	$(CC) $(WARN) -O1 -g $(SAN) $(CPPFLAGS) -o $@ proxy/main.c $(LIB_SRC) $(LIBS)

$(B) $(BA):
	mkdir -p $@

# --- wolfSSL ---
# Rewritten only when WOLFSSL changes, so that switching relinks everything.
build/wolfssl-mode: FORCE | $(B)
	@echo '$(WOLFSSL)' | cmp -s - $@ || echo '$(WOLFSSL)' > $@
# build.sh does nothing when the Debian source version, its flags, mailedge's patches and
# the check it runs are unchanged; the touch keeps make from asking it again after an edit
# that changed none of them.
$(WOLFSSL_DIR)/stamp: wolfssl/build.sh $(wildcard wolfssl/patches/*.patch) wolfssl/x25519-check.c
	bash wolfssl/build.sh $(WOLFSSL_DIR)
	@touch $@
# Re-check now (e.g. after a Debian security update of wolfssl): rebuilds only if needed.
wolfssl:
	bash wolfssl/build.sh $(WOLFSSL_DIR)
# wolfSSL's own benchmark, Debian's library against the bundled one.
wolfssl-bench: $(WOLFSSL_DIR)/stamp
	bash wolfssl/bench.sh $(WOLFSSL_DIR)

# --- unit tests (cmocka), built with the sanitizers; each links the real modules ---
UNIT_TESTS := buffer config relay tls log smtp imap pop3 proxyproto
UNIT_BINS  := $(UNIT_TESTS:%=$(BA)/test_%)
$(BA)/test_buffer: tests/unit/test_buffer.c proxy/buffer.c
$(BA)/test_log:    tests/unit/test_log.c proxy/log.c
$(BA)/test_config: tests/unit/test_config.c proxy/config.c proxy/log.c $(PROTO_SRC)
$(BA)/test_tls:    tests/unit/test_tls.c proxy/tls.c proxy/config.c proxy/log.c $(PROTO_SRC)
$(BA)/test_relay:  tests/unit/test_relay.c proxy/relay.c proxy/buffer.c
$(BA)/test_proxyproto: tests/unit/test_proxyproto.c proxy/proxyproto.c
$(BA)/test_smtp:   tests/unit/test_smtp.c $(SMTP_SRC) protocols/protocol.c
$(BA)/test_imap:   tests/unit/test_imap.c $(IMAP_SRC) protocols/protocol.c
$(BA)/test_pop3:   tests/unit/test_pop3.c $(POP3_SRC) protocols/protocol.c
RELAY_WRAP := -Wl,--wrap=read -Wl,--wrap=write
$(BA)/test_%: $(HDRS) $(WOLFSSL_DEPS) | $(BA)
	$(CC) $(WARN) -O1 -g $(SAN) $(CPPFLAGS) -o $@ $(filter %.c,$^) \
	    $(if $(filter $(BA)/test_relay,$@),$(RELAY_WRAP)) -lcmocka $(LIBS)

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; CMOCKA_MESSAGE_OUTPUT=stdout $$t || fail=1; done; exit $$fail

# --- libFuzzer targets (clang), one per protocol; `make fuzz` runs each for a bounded
# number of iterations ---
FUZZ_TARGETS := smtp imap pop3 proxyproto
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
FUZZ_RUNS    ?= 200000
build/fuzz/fuzz_proxyproto: tests/fuzz/fuzz_proxyproto.c proxy/proxyproto.c proxy/proxyproto.h
	@mkdir -p build/fuzz
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined $(CPPFLAGS) -o $@ $(filter %.c,$^)
# Each protocol target links all of its module's files (protocols/%.c is the first).
build/fuzz/fuzz_smtp: $(SMTP_SRC) protocols/smtp_int.h
build/fuzz/fuzz_imap: $(IMAP_SRC) protocols/imap_int.h
build/fuzz/fuzz_pop3: $(POP3_SRC)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c protocols/%.c protocols/protocol.c protocols/protocol.h
	@mkdir -p build/fuzz
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined $(CPPFLAGS) -o $@ $(filter %.c,$^)
# Seeds are copied so that a run never adds files to the repository's corpus.
fuzz: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    rm -rf build/fuzz/corpus-$$t; mkdir -p build/fuzz/corpus-$$t; \
	    cp tests/fuzz/corpus/$$t/* build/fuzz/corpus-$$t/ 2>/dev/null || true; \
	    echo "== fuzz_$$t: $(FUZZ_RUNS) runs"; \
	    build/fuzz/fuzz_$$t -runs=$(FUZZ_RUNS) -max_len=4096 -seed=1 -print_final_stats=0 \
	        build/fuzz/corpus-$$t 2>&1 | tail -n 1; done

# --- everything CI runs ---
deps:
	@bash tests/install-deps.sh

certs:
	@bash certs-example/mkcerts.sh >/dev/null

integration: $(BA)/mailedge $(B)/mailedge certs
	MAILEDGE_BIN=$(CURDIR)/$(BA)/mailedge /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

test: deps
	$(MAKE) all unit fuzz
	bash demo/selftest.sh
	$(MAKE) integration

demo: deps
	$(MAKE) all certs
	bash demo/run-demo.sh

check-config: all certs
	$(B)/mailedge -t -c conf/demo.ini

# --- benchmark against haproxy, hitch, stunnel4 and nginx (bench/README.md) ---
# Its Debian packages are installed by bench/install-deps.sh, never by `make deps`: CI's
# `make test` does not need them. BENCH_QUICK=1 make bench: ~3-4 minute smoke run.
BENCH_CC := cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2
build/bench/sink: bench/sink.c | build/bench
	$(BENCH_CC) -o $@ bench/sink.c -lev
LOADGEN_SRC := bench/loadgen.c bench/options.c bench/script.c bench/stats.c bench/tlsfast.c
LOADGEN_HDR := bench/options.h bench/script.h bench/stats.h bench/tlsfast.h
build/bench/loadgen: $(LOADGEN_SRC) $(LOADGEN_HDR) | build/bench
	$(BENCH_CC) -o $@ $(LOADGEN_SRC) -lev -lssl -lcrypto
build/bench:
	mkdir -p $@

bench-deps:
	@bash bench/install-deps.sh
bench-tools: build/bench/sink build/bench/loadgen

bench: deps bench-deps
	$(MAKE) all certs bench-tools
	bash bench/run.sh

FORMAT_SRC = proxy/*.[ch] protocols/*.[ch] tests/unit/*.c tests/fuzz/*.c
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

# clean keeps the bundled wolfSSL (a few minutes to rebuild); distclean removes it too.
clean:
	rm -rf $(filter-out $(WOLFSSL_DIR),$(wildcard build/*))
distclean:
	rm -rf build
