/* script: what a loadgen connection says and expects, per mode (see script.c). */
#ifndef BENCH_SCRIPT_H
#define BENCH_SCRIPT_H

#include <stddef.h>

enum step_kind {
	S_CONNECT,   /* TCP connect (from the next --src address) */
	S_SEND,      /* write `text`, in cleartext or through TLS once the handshake is done */
	S_EXPECT,    /* read lines until `match` says the reply is complete (or wrong) */
	S_HANDSHAKE, /* TLS client handshake (resuming in the resume modes) */
	S_DONE,      /* the operation succeeded: close and count it */
	S_BULK,      /* pump (bulk-up) or drain (bulk-down) until the run ends */
	S_HOLD       /* keep the session open until the run ends (idle) */
};

enum match { M_MORE, M_OK, M_FAIL };

struct step {
	enum step_kind kind;
	const char *text;                                /* S_SEND */
	enum match (*match)(const char *line, size_t n); /* S_EXPECT, one line (no CRLF) */
};

enum kind { K_OPS, K_RESUME, K_BULK_UP, K_BULK_DOWN, K_IDLE };

struct mode {
	const char *name;
	const struct step *script;
	enum kind kind;
	int version; /* TLS version the mode forces, 0 = from --tls12/--tls13 */
};

/* Every mode; the list ends with a NULL name. */
extern const struct mode modes[];

#endif
