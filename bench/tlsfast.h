/* tlsfast: client-side shortcuts around OpenSSL 3.0 overheads that would otherwise make
 * loadgen, not the server, the bottleneck of a full-handshake benchmark (see tlsfast.c). */
#ifndef BENCH_TLSFAST_H
#define BENCH_TLSFAST_H

#include <openssl/ssl.h>

/* Decode RSA and EC public keys (the server's certificate, every handshake) with the
 * legacy ASN.1 methods instead of 3.0's provider decoders. Returns 0 if in effect. */
int tlsfast_legacy_pubkeys(void);

/* With a CA file: verify the server's chain once, then accept the same leaf certificate
 * without building the chain again. Without one: skip chain building (libssl still checks
 * the handshake signature with the certificate's key, as it always does). */
void tlsfast_verify_cache(SSL_CTX *ctx, int have_ca);

#endif
