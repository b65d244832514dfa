/* Pre-TLS dialogue driver for STARTTLS listeners: bounded line reading from the
 * plaintext client socket, one protocol call per line, replies written completely
 * before the next line is looked at or an action is taken. */
#ifndef MAILEDGE_DIALOGUE_H
#define MAILEDGE_DIALOGUE_H

#include <stddef.h>

#include "../protocols/protocol.h"
#include "buffer.h"

enum dialogue_event {
	DLG_WANT_READ,
	DLG_WANT_WRITE,
	DLG_STARTTLS, /* ready reply written, input discarded: start the handshake */
	DLG_BACKEND,  /* plaintext handover: input buffer holds the pending line and the rest */
	DLG_CLOSE,    /* protocol closed the dialogue (QUIT, errors, line too long) */
	DLG_EOF,      /* client went away */
	DLG_ERROR,    /* socket error (errno in err) */
};

struct dialogue {
	const struct protocol *proto;
	const struct proto_config *cfg;
	void *state;
	struct buffer in;
	size_t out_off;
	enum proto_action pending;
	size_t discarded;  /* bytes thrown away at STARTTLS (injection attempts) */
	unsigned commands; /* lines handled */
	int err;
	struct proto_out out;
	char last_reply[80]; /* first line of the last reply, for the log */
	unsigned char mem[]; /* proto->max_line bytes */
};

struct dialogue *dialogue_new(const struct protocol *proto, const struct proto_config *cfg,
                              void *state);
void dialogue_free(struct dialogue *d);
/* Queue the greeting (call once, first). */
void dialogue_greet(struct dialogue *d);
/* Queue a final reply (e.g. the timeout reply) and try to write it once. */
void dialogue_say_and_flush(struct dialogue *d, int fd, const char *reply);
/* Make all the progress possible on fd without blocking. */
enum dialogue_event dialogue_step(struct dialogue *d, int fd);

#endif
