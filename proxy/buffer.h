/* Fixed linear byte buffer: data lives in [start, end) of a caller-owned block.
 * It never grows; callers decide what to do when it is full. */
#ifndef MAILEDGE_BUFFER_H
#define MAILEDGE_BUFFER_H

#include <stddef.h>

struct buffer {
	unsigned char *data;
	size_t cap;
	size_t start;
	size_t end;
};

enum buffer_line {
	BUFFER_LINE_FOUND, /* line and len set; the line ends with LF (CR kept) */
	BUFFER_LINE_NEED_MORE,
	BUFFER_LINE_TOO_LONG, /* no LF within max bytes */
};

void buffer_init(struct buffer *b, void *mem, size_t cap);
static inline size_t
buffer_len(const struct buffer *b)
{
	return b->end - b->start;
}
static inline unsigned char *
buffer_data(const struct buffer *b)
{
	return b->data + b->start;
}
/* Free space at the tail (after compacting if that helps). */
size_t buffer_space(struct buffer *b);
static inline unsigned char *
buffer_tail(const struct buffer *b)
{
	return b->data + b->end;
}
/* Move the data to the front of the block. */
void buffer_compact(struct buffer *b);
void buffer_produce(struct buffer *b, size_t n);
void buffer_consume(struct buffer *b, size_t n);
void buffer_reset(struct buffer *b);
size_t buffer_append(struct buffer *b, const void *p, size_t n);
enum buffer_line buffer_getline(const struct buffer *b, size_t max, const unsigned char **line,
                                size_t *len);

#endif
