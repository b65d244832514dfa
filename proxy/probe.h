/* Capability probe: learn what a backend offers (EHLO keywords, IMAP CAPABILITY, POP3
 * CAPA) with a short non-blocking session of our own, at start and every
 * capabilities_refresh, so STARTTLS listeners can offer a filtered copy before TLS. */
#ifndef MAILEDGE_PROBE_H
#define MAILEDGE_PROBE_H

#include "session.h"

struct probe;

/* Start probing for svc (a STARTTLS listener without static capabilities). On success
 * svc->pcfg.caps points at the learned list (owned by the probe). */
struct probe *probe_start(struct service *svc);
void probe_stop(struct probe *p);

#endif
