// SPDX-License-Identifier: (MIT OR Apache-2.0)
// tern's XDP fast path for ChannelData (issue 15), compiled with clang -target bpf and
// embedded in the binary (crates/tern-server/build.rs, feature `xdp`).
//
// Client -> peer: an IPv4 UDP datagram to a listening address whose 5-tuple and channel
// number are in `tern_clients` loses its 4-byte ChannelData header (and anything after the
// claimed length, as the userspace parser ignores it), and leaves as relayed address ->
// peer. Peer -> client: a datagram from a peer to a relay port in `tern_peers` gains the
// header and leaves as listening address -> client. Both verify the incoming UDP checksum
// in full (pseudo-header, header and data, with bpf_csum_diff), then fix it incrementally,
// and rewrite the IPv4 header (its checksum recomputed over 20 bytes).
//
// Anything the program is not sure of goes to the kernel unchanged (XDP_PASS), and userspace
// decides: IPv6, fragments, IPv4 options, lengths that disagree, a wrong UDP checksum, a
// frame the route lookup cannot place, every miss. It never drops. A wrong checksum is
// also what a sender on the same host leaves when the device is to fill it in (TX checksum
// offload over veth: only the pseudo-header sum, CHECKSUM_PARTIAL); the kernel still knows
// that and delivers the frame to tern's socket. Entries exist only for channels whose peer has
// a permission, on servers without `max-bps`; userspace adds and removes them.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_ENTRIES 65536
#define CD_HDR 4
// Longer payloads (only possible on loopback's 64 KiB MTU) go to userspace.
#define MAX_PAYLOAD 16000
#define AF_INET 2
#define HDRS (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))

// Keys and values: byte layouts mirrored in crates/tern-server/src/xdp/maps.rs.
// Addresses in network order, IPv4 in the first 4 bytes of 16; ports in network order.
struct client_key {
	__u8 client_ip[16];
	__u8 server_ip[16];
	__u16 client_port;
	__u16 server_port;
	__u16 channel; // network order
	__u8 family;   // 4 or 6
	__u8 pad;
};

struct client_val {
	__u8 relay_ip[16];
	__u8 peer_ip[16];
	__u16 relay_port;
	__u16 peer_port;
	__u32 pad;
	__u64 packets; // per CPU
	__u64 bytes;   // payload bytes, per CPU
};

struct peer_key {
	__u8 peer_ip[16];
	__u16 peer_port;
	__u16 relay_port;
	__u8 family;
	__u8 pad[3];
};

struct peer_val {
	__u8 relay_ip[16];
	__u8 server_ip[16];
	__u8 client_ip[16];
	__u16 server_port;
	__u16 client_port;
	__u16 channel; // network order
	__u16 pad;
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct client_key);
	__type(value, struct client_val);
} tern_clients SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct peer_key);
	__type(value, struct peer_val);
} tern_peers SEC(".maps");

static __always_inline __u32 csum_add(__u32 sum, __u16 word)
{
	return sum + word;
}

static __always_inline __u32 csum_sub(__u32 sum, __u16 word)
{
	// Subtracting in ones' complement is adding the complement.
	return sum + (__u16)~word;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

// bpf_csum_diff takes sizes in multiples of 4, and before Linux 6.12 at most 512 bytes a
// call: whole chunks first, then the remainder in halving pieces, then 0..3 bytes.
#define CHUNK 512
#define MAX_SUM (MAX_PAYLOAD + CD_HDR + 3 + 8)
#define MAX_CHUNKS (MAX_SUM / CHUNK + 1)
// A bound the verifier can see on an offset below 16 KiB (MAX_SUM is less): the compiler
// is made to forget what it knows, so it keeps the mask.
#define BOUND_16K(x)                                                                               \
	({                                                                                         \
		__u32 __v = (x);                                                                   \
		asm volatile("" : "+r"(__v));                                                      \
		__v & 0x3fff;                                                                      \
	})

static __always_inline __u32 add32(__u32 sum, __u32 word)
{
	sum += word;
	return sum + (sum < word); // end-around carry
}

// Sums `n` bytes of the packet from offset `off` (a UDP header) into `*sum` as the
// kernel's csum_partial does: native 32-bit words, the last one zero-filled; fold it to
// get the ones' complement sum of the bytes as 16-bit words. -1 when the frame is shorter.
// Every piece's offset is computed from `n` alone (piece of `step` bytes at
// n & ~(2 * step - 1)), never carried along the branches, so the verifier's states from
// different lengths stay alike and merge.
static __always_inline int sum_packet(struct xdp_md *ctx, __u32 off, __u32 n, __u32 *sum)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__s64 s = 0;
	if (n > MAX_SUM || off > 64)
		return -1;
	__u32 whole = n & ~(CHUNK - 1);
	for (__u32 i = 0; i < MAX_CHUNKS; i++) {
		if (i * CHUNK >= whole)
			break;
		__u8 *p = data + off + i * CHUNK;
		if ((void *)(p + CHUNK) > data_end)
			return -1;
		s = bpf_csum_diff(0, 0, (__be32 *)p, CHUNK, (__u32)s);
		if (s < 0)
			return -1;
	}
#pragma unroll
	for (__u32 step = CHUNK / 2; step >= 4; step /= 2) {
		if (n & step) {
			__u8 *p = data + off + BOUND_16K(n & ~(2 * step - 1));
			if ((void *)(p + step) > data_end)
				return -1;
			s = bpf_csum_diff(0, 0, (__be32 *)p, step, (__u32)s);
			if (s < 0)
				return -1;
		}
	}
	__u32 rest = n & 3, last = 0;
	if (rest) {
		// Byte by byte: the frame may end right after the datagram.
		__u8 *p = data + off + BOUND_16K(n & ~3);
		__u8 *w = (__u8 *)&last;
		if ((void *)(p + 1) > data_end)
			return -1;
		w[0] = p[0];
		if (rest > 1) {
			if ((void *)(p + 2) > data_end)
				return -1;
			w[1] = p[1];
		}
		if (rest > 2) {
			if ((void *)(p + 3) > data_end)
				return -1;
			w[2] = p[2];
		}
	}
	*sum = add32((__u32)s, last);
	return 0;
}

// The IPv4 header checksum over 20 bytes (no options: packets with options pass).
static __always_inline void ip_checksum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;
	ip->check = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	ip->check = ~csum_fold(sum);
}

// Values as they sit in memory (network order) are summed as native words: ones'
// complement sums are byte-order independent as long as every term is treated alike.
static __always_inline __u32 sum_ip4(__u32 sum, __u32 addr)
{
	return csum_add(csum_add(sum, (__u16)addr), (__u16)(addr >> 16));
}

static __always_inline __u32 sub_ip4(__u32 sum, __u32 addr)
{
	return csum_sub(csum_sub(sum, (__u16)addr), (__u16)(addr >> 16));
}

// Whether the UDP checksum of the IPv4 datagram at `udp` (`udp_len` bytes, checksum
// nonzero) is right: pseudo-header, header and data summed in full. A sender that left the
// checksum to offload (CHECKSUM_PARTIAL over veth) has only the pseudo-header sum there,
// and fails this, as does any corruption; the kernel then has the frame.
static __always_inline int udp4_ok(struct xdp_md *ctx, struct iphdr *ip, struct udphdr *udp, __u16 udp_len)
{
	__u32 sum;
	if (sum_packet(ctx, sizeof(struct ethhdr) + sizeof(struct iphdr), udp_len, &sum))
		return 0;
	__u32 s = csum_fold(sum);
	s = sum_ip4(s, ip->saddr);
	s = sum_ip4(s, ip->daddr);
	s = csum_add(s, bpf_htons(IPPROTO_UDP));
	s = csum_add(s, udp->len);
	return csum_fold(s) == 0xffff;
}

// Sends the rewritten frame: XDP_TX out of the ingress device, else a redirect. The route
// was looked up before anything was changed.
static __always_inline int send(struct xdp_md *ctx, struct ethhdr *eth, struct bpf_fib_lookup *fib)
{
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	if (fib->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib->ifindex, 0);
}

// Looks up the route from `src` to `dst` for a packet of `tot_len` bytes; 0 when it leaves
// by a known neighbour within the MTU.
static __always_inline int route(struct xdp_md *ctx, struct bpf_fib_lookup *fib, __u32 src, __u32 dst,
				 __u16 tot_len, __u8 tos)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->tos = tos;
	fib->l4_protocol = IPPROTO_UDP;
	fib->tot_len = tot_len;
	fib->ipv4_src = src;
	fib->ipv4_dst = dst;
	fib->ifindex = ctx->ingress_ifindex;
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

// Client -> peer. `udp_len` is the UDP length (header included), checked against the frame.
static __always_inline int to_peer(struct xdp_md *ctx, struct iphdr *ip, struct udphdr *udp, __u16 udp_len)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *cd = (__u8 *)(udp + 1);
	if ((void *)(cd + CD_HDR) > data_end)
		return XDP_PASS;
	__u16 channel = *(__u16 *)cd;
	__u16 len = bpf_ntohs(*(__u16 *)(cd + 2));
	__u8 first = cd[0];
	// 0x40..0x4F (RFC 8656) or 0x40..0x7F (RFC 5766): the map decides which are bound.
	if (first < 0x40 || first > 0x7f)
		return XDP_PASS;
	if (udp_len < sizeof(struct udphdr) + CD_HDR + len || len > MAX_PAYLOAD)
		return XDP_PASS;

	struct client_key key = {};
	__builtin_memcpy(key.client_ip, &ip->saddr, 4);
	__builtin_memcpy(key.server_ip, &ip->daddr, 4);
	key.client_port = udp->source;
	key.server_port = udp->dest;
	key.channel = channel;
	key.family = 4;
	struct client_val *v = bpf_map_lookup_elem(&tern_clients, &key);
	if (!v)
		return XDP_PASS;

	__u32 relay_ip, peer_ip;
	__builtin_memcpy(&relay_ip, v->relay_ip, 4);
	__builtin_memcpy(&peer_ip, v->peer_ip, 4);
	__u16 new_udp_len = sizeof(struct udphdr) + len;
	__u16 new_tot = sizeof(struct iphdr) + new_udp_len;
	if (udp->check && !udp4_ok(ctx, ip, udp, udp_len))
		return XDP_PASS;
	struct bpf_fib_lookup fib;
	if (route(ctx, &fib, relay_ip, peer_ip, new_tot, ip->tos) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;

	// The UDP checksum, incrementally: out go the addresses, ports, both copies of the
	// length (pseudo-header and header), the ChannelData header and the bytes after the
	// claimed length; in come the new ones. Zero (no checksum) stays zero.
	__u16 check = udp->check;
	if (check) {
		__u32 sum = (__u16)~check;
		sum = sub_ip4(sum, ip->saddr);
		sum = sub_ip4(sum, ip->daddr);
		sum = csum_sub(sum, udp->source);
		sum = csum_sub(sum, udp->dest);
		sum = csum_sub(sum, udp->len);
		sum = csum_sub(sum, udp->len);
		sum = csum_sub(sum, *(__u16 *)cd);
		sum = csum_sub(sum, *(__u16 *)(cd + 2));
		// Trailing bytes (padding, or anything else) after the payload: at most 3 are
		// accepted here; more go to userspace.
		__u16 extra = udp_len - sizeof(struct udphdr) - CD_HDR - len;
		if (extra > 3)
			return XDP_PASS;
		__u32 tail = HDRS + CD_HDR + len;
		for (int i = 0; i < extra && i < 3; i++) {
			__u8 b;
			if (bpf_xdp_load_bytes(ctx, tail + i, &b, 1))
				return XDP_PASS;
			// Offset from the UDP header is even for the high byte of a word.
			__u16 word = ((CD_HDR + len + i) & 1) ? bpf_htons(b) : bpf_htons((__u16)b << 8);
			sum = csum_sub(sum, word);
		}
		__u16 nlen = bpf_htons(new_udp_len);
		sum = sum_ip4(sum, relay_ip);
		sum = sum_ip4(sum, peer_ip);
		sum = csum_add(sum, v->relay_port);
		sum = csum_add(sum, v->peer_port);
		sum = csum_add(sum, nlen);
		sum = csum_add(sum, nlen);
		check = ~csum_fold(sum);
		if (check == 0)
			check = 0xffff;
	} else if (udp_len - sizeof(struct udphdr) - CD_HDR - len > 3) {
		return XDP_PASS;
	}

	__u16 relay_port = v->relay_port, peer_port = v->peer_port;
	v->packets += 1;
	v->bytes += len;

	// Move the Ethernet, IP and UDP headers 4 bytes forward over the ChannelData header.
	struct ethhdr *old = (void *)(long)ctx->data;
	if ((void *)old + HDRS + CD_HDR > data_end)
		return XDP_PASS;
	__u8 hdrs[HDRS];
	__builtin_memcpy(hdrs, old, HDRS);
	if (bpf_xdp_adjust_head(ctx, CD_HDR))
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS > data_end)
		return XDP_PASS;
	__builtin_memcpy(data, hdrs, HDRS);
	// Drop whatever followed the payload (padding, Ethernet minimum-frame fill).
	int excess = (int)(data_end - data) - (int)(HDRS + len);
	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -excess))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *nip = (void *)(eth + 1);
	struct udphdr *nudp = (void *)(nip + 1);
	if ((void *)(nudp + 1) > data_end)
		return XDP_PASS;
	nip->saddr = relay_ip;
	nip->daddr = peer_ip;
	nip->tot_len = bpf_htons(new_tot);
	nip->ttl = 64;
	ip_checksum(nip);
	nudp->source = relay_port;
	nudp->dest = peer_port;
	nudp->len = bpf_htons(new_udp_len);
	nudp->check = check;
	return send(ctx, eth, &fib);
}

// Peer -> client.
static __always_inline int to_client(struct xdp_md *ctx, struct iphdr *ip, struct udphdr *udp, __u16 udp_len)
{
	struct peer_key key = {};
	__builtin_memcpy(key.peer_ip, &ip->saddr, 4);
	key.peer_port = udp->source;
	key.relay_port = udp->dest;
	key.family = 4;
	struct peer_val *v = bpf_map_lookup_elem(&tern_peers, &key);
	if (!v)
		return XDP_PASS;
	__u32 relay_ip, server_ip, client_ip;
	__builtin_memcpy(&relay_ip, v->relay_ip, 4);
	if (relay_ip != ip->daddr)
		return XDP_PASS;
	__builtin_memcpy(&server_ip, v->server_ip, 4);
	__builtin_memcpy(&client_ip, v->client_ip, 4);
	__u16 len = udp_len - sizeof(struct udphdr);
	if (len > MAX_PAYLOAD)
		return XDP_PASS;
	__u16 new_udp_len = udp_len + CD_HDR;
	__u16 new_tot = sizeof(struct iphdr) + new_udp_len;
	if (udp->check && !udp4_ok(ctx, ip, udp, udp_len))
		return XDP_PASS;
	struct bpf_fib_lookup fib;
	if (route(ctx, &fib, server_ip, client_ip, new_tot, ip->tos) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;

	__u16 check = udp->check;
	__u16 nlen = bpf_htons(new_udp_len);
	__u16 blen = bpf_htons(len);
	if (check) {
		__u32 sum = (__u16)~check;
		sum = sub_ip4(sum, ip->saddr);
		sum = sub_ip4(sum, ip->daddr);
		sum = csum_sub(sum, udp->source);
		sum = csum_sub(sum, udp->dest);
		sum = csum_sub(sum, udp->len);
		sum = csum_sub(sum, udp->len);
		sum = sum_ip4(sum, server_ip);
		sum = sum_ip4(sum, client_ip);
		sum = csum_add(sum, v->server_port);
		sum = csum_add(sum, v->client_port);
		sum = csum_add(sum, nlen);
		sum = csum_add(sum, nlen);
		sum = csum_add(sum, v->channel);
		sum = csum_add(sum, blen);
		check = ~csum_fold(sum);
		if (check == 0)
			check = 0xffff;
	}
	__u16 server_port = v->server_port, client_port = v->client_port, channel = v->channel;
	v->packets += 1;
	v->bytes += len;

	// Drop anything after the UDP payload (Ethernet fill), then make room for the header.
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int excess = (int)(data_end - data) - (int)(sizeof(struct ethhdr) + udp_len + sizeof(struct iphdr));
	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -excess))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS > data_end)
		return XDP_PASS;
	__u8 hdrs[HDRS];
	__builtin_memcpy(hdrs, data, HDRS);
	if (bpf_xdp_adjust_head(ctx, -CD_HDR))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS + CD_HDR > data_end)
		return XDP_PASS;
	__builtin_memcpy(data, hdrs, HDRS);
	struct ethhdr *eth = data;
	struct iphdr *nip = (void *)(eth + 1);
	struct udphdr *nudp = (void *)(nip + 1);
	__u16 *cd = (void *)(nudp + 1);
	cd[0] = channel;
	cd[1] = blen;
	nip->saddr = server_ip;
	nip->daddr = client_ip;
	nip->tot_len = bpf_htons(new_tot);
	nip->ttl = 64;
	ip_checksum(nip);
	nudp->source = server_port;
	nudp->dest = client_port;
	nudp->len = nlen;
	nudp->check = check;
	return send(ctx, eth, &fib);
}

SEC("xdp")
int tern_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS; // IPv6 and everything else: the kernel's path.
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->ihl != 5 || ip->version != 4 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	// Fragments (MF set or an offset) go to the kernel, which reassembles.
	if (ip->frag_off & bpf_htons(0x3fff))
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	__u16 tot = bpf_ntohs(ip->tot_len);
	__u16 udp_len = bpf_ntohs(udp->len);
	if (tot != sizeof(struct iphdr) + udp_len || udp_len < sizeof(struct udphdr))
		return XDP_PASS;
	if ((void *)ip + tot > data_end)
		return XDP_PASS;
	int verdict = to_peer(ctx, ip, udp, udp_len);
	if (verdict != XDP_PASS)
		return verdict;
	// A ChannelData miss may still be a peer's datagram to a relay port.
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	return to_client(ctx, ip, udp, udp_len);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
