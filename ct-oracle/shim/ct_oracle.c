/*
 * The oracle: libnetfilter_conntrack's own parser (nfct_payload_parse) run on a byte layout,
 * its results read back with nfct_get_attr*() into a plain struct (ct_oracle.h).
 *
 * libnetfilter_conntrack 1.0.9 calls exit(1) when an attribute fails its validation (its
 * "ABI breakage" check), so every parse runs in a forked child: the child writes the struct
 * into a pipe and exits 0; any other end of the child means the oracle did not accept the
 * input. The child's stderr goes to /dev/null (the library prints a warning before exiting).
 */
#include "ct_oracle.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

/* Copies an optional string attribute of the oracle into a fixed buffer. */
static void copy_str(const struct nf_conntrack *ct, enum nf_conntrack_attr attr,
		     char *dst, size_t cap, uint8_t *truncated, uint64_t *set, uint64_t bit)
{
	const char *s;
	size_t len;

	if (!nfct_attr_is_set(ct, attr))
		return;
	s = nfct_get_attr(ct, attr);
	if (s == NULL)
		return;
	len = strlen(s);
	if (len >= cap) {
		*truncated = 1;
		len = cap - 1;
	}
	memcpy(dst, s, len);
	dst[len] = '\0';
	*set |= bit;
}

/* The original tuple of a parsed entry (ATTR_ORIG_* and ATTR_ICMP_*). */
static void read_orig_tuple(const struct nf_conntrack *ct, struct cto_tuple *t)
{
	t->set |= CTO_T_PRESENT;
	if (nfct_attr_is_set(ct, ATTR_ORIG_IPV4_SRC)) {
		uint32_t a = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC);
		memcpy(t->src4, &a, 4);
		t->set |= CTO_T_SRC4;
	}
	if (nfct_attr_is_set(ct, ATTR_ORIG_IPV4_DST)) {
		uint32_t a = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST);
		memcpy(t->dst4, &a, 4);
		t->set |= CTO_T_DST4;
	}
	if (nfct_attr_is_set(ct, ATTR_ORIG_IPV6_SRC)) {
		memcpy(t->src6, nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC), 16);
		t->set |= CTO_T_SRC6;
	}
	if (nfct_attr_is_set(ct, ATTR_ORIG_IPV6_DST)) {
		memcpy(t->dst6, nfct_get_attr(ct, ATTR_ORIG_IPV6_DST), 16);
		t->set |= CTO_T_DST6;
	}
	if (nfct_attr_is_set(ct, ATTR_ORIG_L4PROTO)) {
		t->l4proto = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
		t->set |= CTO_T_L4PROTO;
	}
	if (nfct_attr_is_set(ct, ATTR_ORIG_PORT_SRC)) {
		t->sport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC));
		t->set |= CTO_T_SPORT;
	}
	if (nfct_attr_is_set(ct, ATTR_ORIG_PORT_DST)) {
		t->dport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
		t->set |= CTO_T_DPORT;
	}
	if (nfct_attr_is_set(ct, ATTR_ICMP_ID)) {
		t->icmp_id = ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID));
		t->set |= CTO_T_ICMP_ID;
	}
	if (nfct_attr_is_set(ct, ATTR_ICMP_TYPE)) {
		t->icmp_type = nfct_get_attr_u8(ct, ATTR_ICMP_TYPE);
		t->set |= CTO_T_ICMP_TYPE;
	}
	if (nfct_attr_is_set(ct, ATTR_ICMP_CODE)) {
		t->icmp_code = nfct_get_attr_u8(ct, ATTR_ICMP_CODE);
		t->set |= CTO_T_ICMP_CODE;
	}
}

/* The last CTA_TUPLE_ORIG / _REPLY / _MASTER of the payload, found with libmnl's walk (the
 * one nfct_payload_parse uses, which keeps the last attribute of each type). */
static int find_tuples_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	uint16_t type = mnl_attr_get_type(attr);

	if (type == CTA_TUPLE_ORIG || type == CTA_TUPLE_REPLY || type == CTA_TUPLE_MASTER)
		tb[type] = attr;
	return MNL_CB_OK;
}

/*
 * libnetfilter_conntrack reads the ICMP id/type/code of every tuple into the same
 * ATTR_ICMP_* attributes (those of the original tuple), so each tuple is parsed on its own:
 * its bytes, unchanged but for the type, become the CTA_TUPLE_ORIG of a one-attribute
 * payload.
 */
static int parse_tuple_alone(const struct nlattr *tuple, uint16_t l3num, struct cto_tuple *t)
{
	size_t len = tuple->nla_len;
	struct nlattr *copy;
	struct nf_conntrack *ct;
	int ret = -1;

	copy = calloc(1, MNL_ALIGN(len) + 64);
	if (copy == NULL)
		return -1;
	memcpy(copy, tuple, len);
	copy->nla_type = (tuple->nla_type & ~NLA_TYPE_MASK) | CTA_TUPLE_ORIG;
	ct = nfct_new();
	if (ct != NULL && nfct_payload_parse(copy, len, l3num, ct) == 0) {
		read_orig_tuple(ct, t);
		ret = 0;
	}
	if (ct != NULL)
		nfct_destroy(ct);
	free(copy);
	return ret;
}

static int run(const uint8_t *data, size_t len, uint16_t l3num, struct cto_result *r)
{
	const struct nlattr *tuples[CTA_MAX + 1] = {0};
	struct nf_conntrack *ct;
	uint8_t *buf;

	/* An aligned copy with zeros after it: the library reads string attributes with
	 * strlen/strdup, which would run past an attribute that has no NUL. */
	buf = calloc(1, len + 4096);
	if (buf == NULL)
		return -1;
	memcpy(buf, data, len);

	ct = nfct_new();
	if (ct == NULL)
		return -1;
	if (nfct_payload_parse(buf, len, l3num, ct) < 0)
		return -2;

#define U32(attr, field, bit)                                   \
	if (nfct_attr_is_set(ct, attr)) {                       \
		r->field = nfct_get_attr_u32(ct, attr);         \
		r->set |= bit;                                  \
	}
#define U64(attr, field, bit)                                   \
	if (nfct_attr_is_set(ct, attr)) {                       \
		r->field = nfct_get_attr_u64(ct, attr);         \
		r->set |= bit;                                  \
	}
#define U8(attr, field, bit)                                    \
	if (nfct_attr_is_set(ct, attr)) {                       \
		r->field = nfct_get_attr_u8(ct, attr);          \
		r->set |= bit;                                  \
	}
	U32(ATTR_STATUS, status, CTO_STATUS)
	U32(ATTR_MARK, mark, CTO_MARK)
	U32(ATTR_ID, id, CTO_ID)
	U32(ATTR_TIMEOUT, timeout, CTO_TIMEOUT)
	U32(ATTR_USE, use, CTO_USE)
	U32(ATTR_SECMARK, secmark, CTO_SECMARK)
	if (nfct_attr_is_set(ct, ATTR_ZONE)) {
		r->zone = nfct_get_attr_u16(ct, ATTR_ZONE);
		r->set |= CTO_ZONE;
	}
	U8(ATTR_TCP_STATE, tcp_state, CTO_TCP_STATE)
	U8(ATTR_TCP_WSCALE_ORIG, tcp_wscale_orig, CTO_TCP_WSCALE_ORIG)
	U8(ATTR_TCP_WSCALE_REPL, tcp_wscale_repl, CTO_TCP_WSCALE_REPL)
	U8(ATTR_TCP_FLAGS_ORIG, tcp_flags_orig, CTO_TCP_FLAGS_ORIG)
	U8(ATTR_TCP_MASK_ORIG, tcp_mask_orig, CTO_TCP_FLAGS_ORIG)
	U8(ATTR_TCP_FLAGS_REPL, tcp_flags_repl, CTO_TCP_FLAGS_REPL)
	U8(ATTR_TCP_MASK_REPL, tcp_mask_repl, CTO_TCP_FLAGS_REPL)
	U64(ATTR_ORIG_COUNTER_PACKETS, packets_orig, CTO_PACKETS_ORIG)
	U64(ATTR_ORIG_COUNTER_BYTES, bytes_orig, CTO_BYTES_ORIG)
	U64(ATTR_REPL_COUNTER_PACKETS, packets_repl, CTO_PACKETS_REPL)
	U64(ATTR_REPL_COUNTER_BYTES, bytes_repl, CTO_BYTES_REPL)
	U64(ATTR_TIMESTAMP_START, ts_start, CTO_TS_START)
	U64(ATTR_TIMESTAMP_STOP, ts_stop, CTO_TS_STOP)
#undef U32
#undef U64
#undef U8
	copy_str(ct, ATTR_HELPER_NAME, r->helper, sizeof(r->helper), &r->helper_truncated,
		 &r->set, CTO_HELPER);
	copy_str(ct, ATTR_SECCTX, r->secctx, sizeof(r->secctx), &r->secctx_truncated,
		 &r->set, CTO_SECCTX);
	if (nfct_attr_is_set(ct, ATTR_CONNLABELS)) {
		const struct nfct_bitmask *b = nfct_get_attr(ct, ATTR_CONNLABELS);
		unsigned int max = nfct_bitmask_maxbit(b), i;

		r->labels_maxbit = max;
		for (i = 0; i <= max; i++) {
			if (!nfct_bitmask_test_bit(b, i))
				continue;
			r->labels_count++;
			if (i < 8 * sizeof(r->labels))
				r->labels[i / 8] |= 1 << (i % 8);
		}
		r->set |= CTO_LABELS;
	}
	nfct_destroy(ct);

	mnl_attr_parse_payload(buf, len, find_tuples_cb, tuples);
	if (tuples[CTA_TUPLE_ORIG] && parse_tuple_alone(tuples[CTA_TUPLE_ORIG], l3num, &r->orig) < 0)
		return -3;
	if (tuples[CTA_TUPLE_REPLY] && parse_tuple_alone(tuples[CTA_TUPLE_REPLY], l3num, &r->reply) < 0)
		return -3;
	if (tuples[CTA_TUPLE_MASTER] && parse_tuple_alone(tuples[CTA_TUPLE_MASTER], l3num, &r->master) < 0)
		return -3;
	free(buf);
	return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int cto_parse(const uint8_t *data, size_t len, uint16_t l3num, struct cto_result *out)
{
	int fds[2], status = 0;
	size_t got = 0;
	pid_t pid;

	memset(out, 0, sizeof(*out));
	if (pipe(fds) < 0)
		return CTO_ERROR;
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return CTO_ERROR;
	}
	if (pid == 0) {
		struct cto_result r;
		int devnull = open("/dev/null", O_WRONLY);
		int ret;

		close(fds[0]);
		if (devnull >= 0)
			dup2(devnull, 2);
		memset(&r, 0, sizeof(r));
		ret = run(data, len, l3num, &r);
		if (ret == 0 && write_all(fds[1], &r, sizeof(r)) == 0)
			_exit(0);
		_exit(ret == -2 ? 3 : 4);
	}
	close(fds[1]);
	for (;;) {
		ssize_t n = read(fds[0], (char *)out + got, sizeof(*out) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof(*out))
			break;
	}
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return CTO_ERROR;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == sizeof(*out))
		return CTO_ACCEPTED;
	if (WIFEXITED(status) && (WEXITSTATUS(status) == 1 || WEXITSTATUS(status) == 3))
		return CTO_REJECTED;
	if (WIFSIGNALED(status))
		return CTO_CRASHED;
	return CTO_ERROR;
}

size_t cto_result_size(void)
{
	return sizeof(struct cto_result);
}
