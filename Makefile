# mailedge — see README.md.  make | make test | make demo | make check-config
CC      ?= cc
PKGS    := wolfssl libev inih
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wformat=2 -Wno-format-nonliteral
CPPFLAGS += -Iproxy -Iprotocols
LIBS    := -lwolfssl -lev -linih -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

PROXY_SRC := proxy/buffer.c proxy/log.c proxy/config.c proxy/tls.c proxy/relay.c \
             proxy/backend.c proxy/session.c proxy/listener.c
PROTO_SRC := protocols/protocol.c protocols/smtp.c protocols/imap.c protocols/pop3.c
LIB_SRC   := $(PROXY_SRC) $(PROTO_SRC)
HDRS      := $(wildcard proxy/*.h protocols/*.h)

B  := build
BA := build/asan

.PHONY: all asan deps certs test unit integration demo clean check-config
all: $(B)/mailedge

$(B)/mailedge: proxy/main.c $(LIB_SRC) $(HDRS) | $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) -o $@ proxy/main.c $(LIB_SRC) $(LIBS)

asan: $(BA)/mailedge
$(BA)/mailedge: proxy/main.c $(LIB_SRC) $(HDRS) | $(BA)
	$(CC) $(WARN) -O1 -g $(SAN) $(CPPFLAGS) -o $@ proxy/main.c $(LIB_SRC) $(LIBS)

$(B) $(BA):
	mkdir -p $@

# --- unit tests (cmocka), built with the sanitizers; each links the real modules ---
UNIT_TESTS := buffer config relay tls log
UNIT_BINS  := $(UNIT_TESTS:%=$(BA)/test_%)
$(BA)/test_buffer: tests/unit/test_buffer.c proxy/buffer.c
$(BA)/test_log:    tests/unit/test_log.c proxy/log.c
$(BA)/test_config: tests/unit/test_config.c proxy/config.c proxy/log.c $(PROTO_SRC)
$(BA)/test_tls:    tests/unit/test_tls.c proxy/tls.c proxy/config.c proxy/log.c $(PROTO_SRC)
$(BA)/test_relay:  tests/unit/test_relay.c proxy/relay.c proxy/buffer.c
RELAY_WRAP := -Wl,--wrap=read -Wl,--wrap=write
$(BA)/test_%: $(HDRS) | $(BA)
	$(CC) $(WARN) -O1 -g $(SAN) $(CPPFLAGS) -o $@ $(filter %.c,$^) \
	    $(if $(filter $(BA)/test_relay,$@),$(RELAY_WRAP)) -lcmocka $(LIBS)

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; CMOCKA_MESSAGE_OUTPUT=stdout $$t || fail=1; done; exit $$fail

# --- everything CI runs ---
deps:
	@bash tests/install-deps.sh

certs:
	@bash certs-example/mkcerts.sh >/dev/null

integration: $(BA)/mailedge $(B)/mailedge certs
	MAILEDGE_BIN=$(CURDIR)/$(BA)/mailedge /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

test: deps
	$(MAKE) all unit
	bash demo/selftest.sh
	$(MAKE) integration

demo: deps
	$(MAKE) all certs
	bash demo/run-demo.sh

check-config: all certs
	$(B)/mailedge -t -c conf/demo.ini

clean:
	rm -rf build
