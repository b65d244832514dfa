/* Leveled logging to stderr and optionally syslog (facility mail). One event per line. */
#ifndef MAILEDGE_LOG_H
#define MAILEDGE_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARNING, LOG_LVL_ERROR };

void log_setup(enum log_level level, int use_syslog);
enum log_level log_get_level(void);
int log_level_parse(const char *s, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_get_level() <= LOG_LVL_DEBUG)                                              \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                       \
	} while (0)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

/* Copy untrusted bytes into dst as printable ASCII: controls, non-ASCII, '\\' and
 * quotes become \xNN. Always NUL-terminates; truncates with "..." when dst is small.
 * Returns dst. */
char *log_sanitize(char *dst, size_t dstlen, const void *src, size_t srclen);

#endif
