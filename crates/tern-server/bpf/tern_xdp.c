// SPDX-License-Identifier: (MIT OR Apache-2.0)
// tern's XDP fast path for ChannelData (issue 15), compiled with clang -target bpf and
// embedded in the binary (crates/tern-server/build.rs, feature `xdp`).
//
// Client -> peer: a UDP datagram (IPv4 or IPv6) to a listening address whose 5-tuple and
// channel number are in `tern_clients` loses its 4-byte ChannelData header (and anything
// after the claimed length, as the userspace parser ignores it), and leaves as relayed
// address -> peer. Peer -> client: a datagram from a peer to a relay port in `tern_peers`
// gains the header and leaves as listening address -> client. Both verify the incoming UDP
// checksum in full (pseudo-header, header and data, with bpf_csum_diff), then fix it
// incrementally, and rewrite the IP header: IPv4 with TTL 64 and its checksum recomputed
// over 20 bytes, IPv6 with hop limit 64, its traffic class kept and the flow label zeroed
// (as userspace's own socket would send: a new flow, the default hop limit). The family
// stays what it was: an entry's four addresses are all of one family (userspace relays
// mixed ones).
//
// The hairpin (`hairpin`, called from `to_peer`): when a client's peer is one of tern's own
// relayed addresses (`tern_own`, filled by the loader) and the allocation there has a channel
// bound to the sender's relayed address, the ChannelData goes straight to that allocation's
// client as its ChannelData, counted on both entries: both ends of a call relaying through
// one tern never reach userspace.
//
// Anything the program is not sure of goes to the kernel unchanged (XDP_PASS), and userspace
// decides: fragments, IPv4 options, any IPv6 next header but UDP (extension headers
// included), lengths that disagree, a wrong UDP checksum (or none, on IPv6), a frame the
// route lookup cannot place, every miss. It never drops. A wrong checksum is
// also what a sender on the same host leaves when the device is to fill it in (TX checksum
// offload over veth: only the pseudo-header sum, CHECKSUM_PARTIAL); the kernel still knows
// that and delivers the frame to tern's socket. Entries exist only for channels whose peer has
// a permission, on servers without `max-bps`; userspace adds and removes them.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_ENTRIES 65536
#define CD_HDR 4
// Longer payloads (only possible on loopback's 64 KiB MTU) go to userspace.
#define MAX_PAYLOAD 16000
#define AF_INET 2
#define AF_INET6 10
#define ETH (sizeof(struct ethhdr))
#define UDP (sizeof(struct udphdr))
// Per family (`v6` is a constant wherever these are used, so each path is its own code):
// the IP header's length, an address's, and Ethernet + IP + UDP.
#define L3(v6) ((v6) ? sizeof(struct ipv6hdr) : sizeof(struct iphdr))
#define ALEN(v6) ((v6) ? 16 : 4)
#define HDRS(v6) (ETH + L3(v6) + UDP)
#define MAX_HDRS HDRS(1)

// Keys and values: byte layouts mirrored in crates/tern-server/src/xdp/maps.rs.
// Addresses in network order, IPv4 in the first 4 bytes of 16; ports in network order.
// `family` (4 or 6) is that of every address in the entry.
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

// tern's own relayed addresses, one slot per family (0: IPv4, 1: IPv6), written once by the
// loader at start (maps.rs `Program::set_own_relay`); the hairpin below reads them. Layout
// mirrored in maps.rs.
struct own_relay {
	__u8 advertised[16]; // the IP tern hands out in XOR-RELAYED-ADDRESS (external-ip's public part)
	__u8 local[16];      // the IP relay sockets are bound to (the same without external-ip)
	__u8 family;         // 4 or 6; 0: the slot is empty, no hairpin in that family
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct own_relay);
} tern_own SEC(".maps");

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

// bpf_csum_diff takes sizes in multiples of 4, and older kernels at most 512 bytes a call
// (6.18 takes more; 512 keeps older ones working): whole chunks first, then the remainder
// in halving pieces, then 0..3 bytes.
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
	if (n > MAX_SUM || off > MAX_HDRS)
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
// `alen` bytes of address (4 or 16, a constant), 2-byte aligned.
static __always_inline __u32 sum_addr(__u32 sum, const void *addr, int alen)
{
	const __u16 *w = addr;
#pragma unroll
	for (int i = 0; i < alen / 2; i++)
		sum = csum_add(sum, w[i]);
	return sum;
}

static __always_inline __u32 sub_addr(__u32 sum, const void *addr, int alen)
{
	const __u16 *w = addr;
#pragma unroll
	for (int i = 0; i < alen / 2; i++)
		sum = csum_sub(sum, w[i]);
	return sum;
}

static __always_inline int addr_eq(const void *a, const void *b, int alen)
{
	const __u16 *x = a, *y = b;
	__u16 diff = 0;
#pragma unroll
	for (int i = 0; i < alen / 2; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

// The IP header after the Ethernet header, and its source and destination addresses.
static __always_inline void *src_addr(void *ip, int v6)
{
	return v6 ? (void *)&((struct ipv6hdr *)ip)->saddr : (void *)&((struct iphdr *)ip)->saddr;
}

static __always_inline void *dst_addr(void *ip, int v6)
{
	return v6 ? (void *)&((struct ipv6hdr *)ip)->daddr : (void *)&((struct iphdr *)ip)->daddr;
}

// IPv4's TOS, or IPv6's traffic class (in the flowinfo layout, flow label zero): kept on the
// way out and given to the route lookup.
static __always_inline __be32 class_of(void *ip, int v6)
{
	if (v6)
		return *(__be32 *)ip & bpf_htonl(0x0ff00000);
	return ((struct iphdr *)ip)->tos;
}

// Whether the UDP checksum of the datagram at `udp` (`udp_len` bytes, checksum nonzero) is
// right: pseudo-header, header and data summed in full. A sender that left the checksum to
// offload (CHECKSUM_PARTIAL over veth) has only the pseudo-header sum there, and fails
// this, as does any corruption; the kernel then has the frame.
// The UDP checksum's sum less what a rewrite replaces: the pseudo-header's addresses and
// length, the ports and the UDP length (the pseudo-header's length and the header's are the
// same word, so it goes twice).
static __always_inline __u32 sum_out_headers(__u32 sum, void *ip, struct udphdr *udp, int v6)
{
	sum = sub_addr(sum, src_addr(ip, v6), ALEN(v6));
	sum = sub_addr(sum, dst_addr(ip, v6), ALEN(v6));
	sum = csum_sub(sum, udp->source);
	sum = csum_sub(sum, udp->dest);
	sum = csum_sub(sum, udp->len);
	return csum_sub(sum, udp->len);
}

// The sum plus what the rewrite puts in: new addresses, ports and UDP length `nlen`
// (network order).
static __always_inline __u32 sum_in_headers(__u32 sum, const __u8 *src, const __u8 *dst, __u16 sport,
					    __u16 dport, __u16 nlen, int v6)
{
	sum = sum_addr(sum, src, ALEN(v6));
	sum = sum_addr(sum, dst, ALEN(v6));
	sum = csum_add(sum, sport);
	sum = csum_add(sum, dport);
	sum = csum_add(sum, nlen);
	return csum_add(sum, nlen);
}

// Takes the `extra` (at most 3) bytes after a ChannelData payload of `len` bytes out of
// `*sum`; -1 when they cannot be read.
static __always_inline int sum_out_tail(struct xdp_md *ctx, __u32 *sum, int v6, __u16 len, __u16 extra)
{
	__u32 tail = HDRS(v6) + CD_HDR + len;
	for (int i = 0; i < extra && i < 3; i++) {
		__u8 byte;
		if (bpf_xdp_load_bytes(ctx, tail + i, &byte, 1))
			return -1;
		// Offset from the UDP header is even for the high byte of a word.
		__u16 word = ((CD_HDR + len + i) & 1) ? bpf_htons(byte) : bpf_htons((__u16)byte << 8);
		*sum = csum_sub(*sum, word);
	}
	return 0;
}

static __always_inline int udp_ok(struct xdp_md *ctx, int v6, void *ip, struct udphdr *udp, __u16 udp_len)
{
	__u32 sum;
	if (sum_packet(ctx, ETH + L3(v6), udp_len, &sum))
		return 0;
	__u32 s = csum_fold(sum);
	s = sum_addr(s, src_addr(ip, v6), ALEN(v6));
	s = sum_addr(s, dst_addr(ip, v6), ALEN(v6));
	s = csum_add(s, bpf_htons(IPPROTO_UDP));
	s = csum_add(s, udp->len);
	return csum_fold(s) == 0xffff;
}

// Rewrites the IP header of a relayed packet: addresses, length, TTL or hop limit (64, as
// tern's own sockets send), IPv4's header checksum, IPv6's flow label (zero: a new flow).
static __always_inline void rewrite_ip(void *ip, int v6, const __u8 *src, const __u8 *dst, __u16 udp_len,
				       __be32 class)
{
	if (v6) {
		struct ipv6hdr *ip6 = ip;
		*(__be32 *)ip6 = bpf_htonl(0x60000000) | class;
		ip6->payload_len = bpf_htons(udp_len);
		ip6->hop_limit = 64;
		__builtin_memcpy(&ip6->saddr, src, 16);
		__builtin_memcpy(&ip6->daddr, dst, 16);
	} else {
		struct iphdr *ip4 = ip;
		__builtin_memcpy(&ip4->saddr, src, 4);
		__builtin_memcpy(&ip4->daddr, dst, 4);
		ip4->tot_len = bpf_htons(sizeof(struct iphdr) + udp_len);
		ip4->ttl = 64;
		ip_checksum(ip4);
	}
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

// Looks up the route from `src` to `dst` for a packet of `udp_len` bytes of UDP; 0 when it
// leaves by a known neighbour within the MTU.
static __always_inline int route(struct xdp_md *ctx, struct bpf_fib_lookup *fib, int v6, const __u8 *src,
				 const __u8 *dst, __u16 udp_len, __be32 class)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	if (v6) {
		fib->family = AF_INET6;
		fib->flowinfo = class;
		__builtin_memcpy(fib->ipv6_src, src, 16);
		__builtin_memcpy(fib->ipv6_dst, dst, 16);
	} else {
		fib->family = AF_INET;
		fib->tos = class;
		__builtin_memcpy(&fib->ipv4_src, src, 4);
		__builtin_memcpy(&fib->ipv4_dst, dst, 4);
	}
	fib->l4_protocol = IPPROTO_UDP;
	fib->tot_len = L3(v6) + udp_len;
	fib->ifindex = ctx->ingress_ifindex;
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

// Client A -> client B when both relay through this tern (two relay-only browsers in one
// call): A's channel names a peer at one of tern's own relayed addresses, which is B's.
// Userspace would send the payload from A's relay socket to B's relayed address; the kernel
// (or, with external-ip, the NAT router hairpinning it) delivers it to B's relay socket from
// A's relayed address; the core then frames it as ChannelData for B if B has a channel bound
// to exactly that address, else sends a Data indication or drops it. The program's route
// lookup for a local destination would pass the frame to userspace, so this does the same
// in one step: the frame becomes B's ChannelData, listening address -> B's client.
//
// Why it is the userspace path:
// - A's side: A's entry exists only while A's channel is bound and its peer (B's relayed
//   address) has a permission (the core's ChannelBound), so userspace would relay it too; it
//   counts one packet of `len` bytes to the peer on A's entry, as the core would.
// - "A's relayed address as B sees it" is (the IP A's peer names, A's relay port). tern
//   advertises one relayed IP per family, so the IP A's client names for B is the one A's
//   own relayed address has too: the advertised IP (what clients learn), or the local
//   relay IP (a peer inside the NAT). Userspace sending to the advertised IP with
//   external-ip goes out to the NAT router and comes back from A's external address, the
//   advertised IP and A's port (external-ip needs the router to map each relay port 1:1);
//   sending to the local IP stays local and comes from the local IP. Either way the source
//   B sees is (A's peer IP, A's relay port), which is the key below.
// - B's side: the peer-side entry for that source and B's relay port exists only while B has
//   a channel bound to exactly that address with a permission for its IP, which is when the
//   core would frame ChannelData for B; it counts one packet of `len` bytes to B's client.
//   Without it (no permission: the core drops; a permission without a channel: a Data
//   indication) the frame goes on as before: A's route lookup passes it to userspace, or
//   with external-ip sends it to the router, as userspace would.
// Difference: with external-ip, a router that does not hairpin would lose what userspace
// sends; the program delivers it (B bound a channel to that address, so B expects it).
//
// The frame keeps its headers' places: the IP header and UDP header are rewritten, the
// ChannelData header gets B's channel number (its length stays), and whatever followed the
// payload (padding, which tern does not send over UDP, and Ethernet fill) is dropped. The
// incoming UDP checksum was verified by the caller; it is updated incrementally.
//
// Returns 0 when it is not a hairpin (the client -> peer path goes on, the frame untouched),
// else 1 with the frame's verdict in `*verdict` (a flag apart from the verdict: the
// verifier cannot tell bpf_redirect's answer from any sentinel).
static __always_inline int hairpin(struct xdp_md *ctx, int v6, __u16 len, __u16 extra, struct client_val *a,
				   int *verdict)
{
	__u32 slot = v6 ? 1 : 0;
	struct own_relay *own = bpf_map_lookup_elem(&tern_own, &slot);
	if (!own || own->family != (v6 ? 6 : 4))
		return 0;
	if (!addr_eq(a->peer_ip, own->advertised, ALEN(v6)) && !addr_eq(a->peer_ip, own->local, ALEN(v6)))
		return 0;
	struct peer_key key = {};
	__builtin_memcpy(key.peer_ip, a->peer_ip, 16);
	key.peer_port = a->relay_port;
	key.relay_port = a->peer_port;
	key.family = v6 ? 6 : 4;
	struct peer_val *b = bpf_map_lookup_elem(&tern_peers, &key);
	if (!b || !addr_eq(b->relay_ip, own->local, ALEN(v6)))
		return 0;

	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *ip = data + ETH;
	struct udphdr *udp = ip + L3(v6);
	__u16 *cd = (void *)(udp + 1);
	if ((void *)(cd + 2) > data_end)
		goto pass;
	__u8 server_ip[16], client_ip[16];
	__builtin_memcpy(server_ip, b->server_ip, 16);
	__builtin_memcpy(client_ip, b->client_ip, 16);
	__be32 class = class_of(ip, v6);
	__u16 new_udp_len = UDP + CD_HDR + len;
	struct bpf_fib_lookup fib;
	if (route(ctx, &fib, v6, server_ip, client_ip, new_udp_len, class) != BPF_FIB_LKUP_RET_SUCCESS)
		goto pass;

	// Out go the addresses, ports, both copies of the UDP length, A's channel number and the
	// bytes after the payload; in come B's. The ChannelData length word stays where it was.
	__u16 check = udp->check;
	__u16 nlen = bpf_htons(new_udp_len);
	if (check) {
		__u32 sum = sum_out_headers((__u16)~check, ip, udp, v6);
		sum = csum_sub(sum, cd[0]);
		if (sum_out_tail(ctx, &sum, v6, len, extra))
			goto pass;
		sum = sum_in_headers(sum, server_ip, client_ip, b->server_port, b->client_port, nlen, v6);
		sum = csum_add(sum, b->channel);
		check = ~csum_fold(sum);
		if (check == 0)
			check = 0xffff;
	}
	__u16 server_port = b->server_port, client_port = b->client_port, channel = b->channel;

	// Drop what followed the payload.
	int excess = (int)(data_end - data) - (int)(HDRS(v6) + CD_HDR + len);
	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -excess))
		goto pass;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS(v6) + CD_HDR > data_end)
		goto pass;
	// Counted once the frame is sure to leave rewritten: A's allocation relayed it to a peer,
	// B's from a peer to its client, as the core counts the two halves in userspace.
	a->packets += 1;
	a->bytes += len;
	b->packets += 1;
	b->bytes += len;
	struct ethhdr *eth = data;
	struct udphdr *nudp = data + ETH + L3(v6);
	__u16 *ncd = (void *)(nudp + 1);
	rewrite_ip(data + ETH, v6, server_ip, client_ip, new_udp_len, class);
	nudp->source = server_port;
	nudp->dest = client_port;
	nudp->len = nlen;
	nudp->check = check;
	ncd[0] = channel;
	*verdict = send(ctx, eth, &fib);
	return 1;
pass:
	*verdict = XDP_PASS;
	return 1;
}

// Client -> peer. The frame holds Ethernet, an IP header of the family and the whole UDP
// datagram of `udp_len` bytes (checked by the caller).
static __always_inline int to_peer(struct xdp_md *ctx, int v6, __u16 udp_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *ip = data + ETH;
	struct udphdr *udp = ip + L3(v6);
	__u8 *cd = (__u8 *)(udp + 1);
	if ((void *)(cd + CD_HDR) > data_end)
		return XDP_PASS;
	__u16 channel = *(__u16 *)cd;
	__u16 len = bpf_ntohs(*(__u16 *)(cd + 2));
	__u8 first = cd[0];
	// 0x40..0x4F (RFC 8656) or 0x40..0x7F (RFC 5766): the map decides which are bound.
	if (first < 0x40 || first > 0x7f)
		return XDP_PASS;
	if (udp_len < UDP + CD_HDR + len || len > MAX_PAYLOAD)
		return XDP_PASS;
	// Trailing bytes (padding, or anything else) after the payload: at most 3 are accepted
	// here; more go to userspace.
	__u16 extra = udp_len - UDP - CD_HDR - len;
	if (extra > 3)
		return XDP_PASS;

	struct client_key key = {};
	__builtin_memcpy(key.client_ip, src_addr(ip, v6), ALEN(v6));
	__builtin_memcpy(key.server_ip, dst_addr(ip, v6), ALEN(v6));
	key.client_port = udp->source;
	key.server_port = udp->dest;
	key.channel = channel;
	key.family = v6 ? 6 : 4;
	struct client_val *v = bpf_map_lookup_elem(&tern_clients, &key);
	if (!v)
		return XDP_PASS;

	if (udp->check && !udp_ok(ctx, v6, ip, udp, udp_len))
		return XDP_PASS;
	int verdict;
	if (hairpin(ctx, v6, len, extra, v, &verdict))
		return verdict;
	__u8 relay_ip[16], peer_ip[16];
	__builtin_memcpy(relay_ip, v->relay_ip, 16);
	__builtin_memcpy(peer_ip, v->peer_ip, 16);
	__be32 class = class_of(ip, v6);
	__u16 new_udp_len = UDP + len;
	struct bpf_fib_lookup fib;
	if (route(ctx, &fib, v6, relay_ip, peer_ip, new_udp_len, class) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;

	// The UDP checksum, incrementally (the incoming one was verified): out go the
	// addresses, ports, both copies of the length (pseudo-header and header), the
	// ChannelData header and the bytes after the claimed length; in come the new ones. Zero
	// (no checksum, IPv4 only) stays zero.
	__u16 check = udp->check;
	if (check) {
		__u32 sum = sum_out_headers((__u16)~check, ip, udp, v6);
		sum = csum_sub(sum, *(__u16 *)cd);
		sum = csum_sub(sum, *(__u16 *)(cd + 2));
		if (sum_out_tail(ctx, &sum, v6, len, extra))
			return XDP_PASS;
		sum = sum_in_headers(sum, relay_ip, peer_ip, v->relay_port, v->peer_port,
				     bpf_htons(new_udp_len), v6);
		check = ~csum_fold(sum);
		if (check == 0)
			check = 0xffff;
	}

	__u16 relay_port = v->relay_port, peer_port = v->peer_port;
	v->packets += 1;
	v->bytes += len;

	// Move the Ethernet, IP and UDP headers 4 bytes forward over the ChannelData header.
	if (data + HDRS(v6) + CD_HDR > data_end)
		return XDP_PASS;
	__u8 hdrs[MAX_HDRS];
	__builtin_memcpy(hdrs, data, HDRS(v6));
	if (bpf_xdp_adjust_head(ctx, CD_HDR))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS(v6) > data_end)
		return XDP_PASS;
	__builtin_memcpy(data, hdrs, HDRS(v6));
	// Drop whatever followed the payload (padding, Ethernet minimum-frame fill).
	int excess = (int)(data_end - data) - (int)(HDRS(v6) + len);
	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -excess))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS(v6) > data_end)
		return XDP_PASS;
	struct ethhdr *eth = data;
	struct udphdr *nudp = data + ETH + L3(v6);
	rewrite_ip(data + ETH, v6, relay_ip, peer_ip, new_udp_len, class);
	nudp->source = relay_port;
	nudp->dest = peer_port;
	nudp->len = bpf_htons(new_udp_len);
	nudp->check = check;
	return send(ctx, eth, &fib);
}

// Peer -> client, on a frame checked as for `to_peer`.
static __always_inline int to_client(struct xdp_md *ctx, int v6, __u16 udp_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *ip = data + ETH;
	struct udphdr *udp = ip + L3(v6);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	struct peer_key key = {};
	__builtin_memcpy(key.peer_ip, src_addr(ip, v6), ALEN(v6));
	key.peer_port = udp->source;
	key.relay_port = udp->dest;
	key.family = v6 ? 6 : 4;
	struct peer_val *v = bpf_map_lookup_elem(&tern_peers, &key);
	if (!v)
		return XDP_PASS;
	if (!addr_eq(v->relay_ip, dst_addr(ip, v6), ALEN(v6)))
		return XDP_PASS;
	__u16 len = udp_len - UDP;
	if (len > MAX_PAYLOAD)
		return XDP_PASS;
	if (udp->check && !udp_ok(ctx, v6, ip, udp, udp_len))
		return XDP_PASS;
	__u8 server_ip[16], client_ip[16];
	__builtin_memcpy(server_ip, v->server_ip, 16);
	__builtin_memcpy(client_ip, v->client_ip, 16);
	__be32 class = class_of(ip, v6);
	__u16 new_udp_len = udp_len + CD_HDR;
	struct bpf_fib_lookup fib;
	if (route(ctx, &fib, v6, server_ip, client_ip, new_udp_len, class) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;

	__u16 check = udp->check;
	__u16 nlen = bpf_htons(new_udp_len);
	__u16 blen = bpf_htons(len);
	if (check) {
		__u32 sum = sum_out_headers((__u16)~check, ip, udp, v6);
		sum = sum_in_headers(sum, server_ip, client_ip, v->server_port, v->client_port, nlen, v6);
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
	int excess = (int)(data_end - data) - (int)(ETH + L3(v6) + udp_len);
	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -excess))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS(v6) > data_end)
		return XDP_PASS;
	__u8 hdrs[MAX_HDRS];
	__builtin_memcpy(hdrs, data, HDRS(v6));
	if (bpf_xdp_adjust_head(ctx, -CD_HDR))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS(v6) + CD_HDR > data_end)
		return XDP_PASS;
	__builtin_memcpy(data, hdrs, HDRS(v6));
	struct ethhdr *eth = data;
	struct udphdr *nudp = data + ETH + L3(v6);
	__u16 *cd = (void *)(nudp + 1);
	cd[0] = channel;
	cd[1] = blen;
	rewrite_ip(data + ETH, v6, server_ip, client_ip, new_udp_len, class);
	nudp->source = server_port;
	nudp->dest = client_port;
	nudp->len = nlen;
	nudp->check = check;
	return send(ctx, eth, &fib);
}

// Either way, on a frame whose IP header and whole UDP datagram of `udp_len` bytes are in it.
static __always_inline int relay(struct xdp_md *ctx, int v6, __u16 udp_len)
{
	int verdict = to_peer(ctx, v6, udp_len);
	if (verdict != XDP_PASS)
		return verdict;
	// A ChannelData miss may still be a peer's datagram to a relay port.
	return to_client(ctx, v6, udp_len);
}

SEC("xdp")
int tern_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
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
		if (tot != sizeof(struct iphdr) + udp_len || udp_len < UDP)
			return XDP_PASS;
		if ((void *)ip + tot > data_end)
			return XDP_PASS;
		return relay(ctx, 0, udp_len);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		// Extension headers (a fragment header among them) and everything but UDP: the
		// kernel's.
		if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		struct udphdr *udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > data_end)
			return XDP_PASS;
		__u16 udp_len = bpf_ntohs(udp->len);
		if (bpf_ntohs(ip6->payload_len) != udp_len || udp_len < UDP)
			return XDP_PASS;
		if ((void *)udp + udp_len > data_end)
			return XDP_PASS;
		// No checksum is invalid over IPv6 (RFC 8200 8.1): the kernel drops or counts it.
		if (udp->check == 0)
			return XDP_PASS;
		return relay(ctx, 1, udp_len);
	}
	return XDP_PASS; // ARP and everything else: the kernel's path.
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
