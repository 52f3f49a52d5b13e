/*
 * lunbox-fast: the USB fast path's serve loop in C, an optional addon for the worker thread
 * of src/fabrics/usb/bot-fast-worker.ts. It does exactly what that worker's JavaScript loop
 * does (and nothing more): read CBWs from bulk-OUT, serve plain READ(10/16) and WRITE(10/16)
 * of a leased LUN between the endpoint files and the backstore, answer GOOD, and hand
 * everything else back, unchanged, for the main thread's BOT machine and SCSI core.
 *
 * Why C: on a slow CPU (a Pi Zero, QEMU's TCG emulation) the JavaScript around each command
 * costs about as much as the data copies, and it runs on the CPU the host-side work needs
 * too. Here a command is a few syscalls. And a READ's data is copied once, as in the kernel's
 * own f_mass_storage: f_fs copies it from a shared read-only mapping of the backstore (the
 * page cache) straight into its USB request, with no pread into a buffer first. The mapping
 * is never touched by this process itself, only handed to the kernel, so an I/O error or a
 * range past the end comes back as EFAULT from the write, never as a SIGBUS.
 *
 * The READ data goes out with Linux AIO (io_submit), in 16 KiB pieces (as the kernel's
 * buffers): f_fs copies a piece when it queues it, so the host takes the first piece while
 * the next is copied, and the worker leaves the backstore (BUSY cleared, see the lease
 * protocol in bot-fast.ts) before the host has taken the data, as the JavaScript loop does
 * after its pread. A Bulk-Only Mass Storage Reset cancels what is still queued: the main
 * thread does so (cancelIn) before the reset completes, so data the host abandoned is never
 * taken as a later command's. A WRITE's CSW is queued the same way.
 *
 * A WRITE's data-out is read with AIO too, every 32 KiB piece queued at once, and each piece
 * goes to the backstore as soon as it has arrived while the next ones arrive (write_aio).
 *
 * Node-API is declared here rather than included: the few functions used are the stable
 * Node-API C ABI, so the addon builds with a bare C compiler, needs no node-gyp, loads on
 * Node >= 12 and in worker threads. Little-endian Linux (x86-64, ARM).
 *
 * Exports:
 *   serve(ctl, layout, inFd, outFd, lunCount, cbw, data, out) -> number
 *     ctl: the control block (Int32Array on a SharedArrayBuffer), layout: its indices
 *     (Int32Array, see LAYOUT in bot-fast-worker.ts), cbw: Buffer >= 1024 bytes, data: the
 *     WRITE buffer (its length is the largest command served), out: Int32Array(3).
 *     Returns 1: a CBW for the core, out[0] its length in cbw, out[1] the data-out bytes
 *     already read into data (-1: none); GO has been set to 0. 2: a READ failed midway and
 *     was answered (CSW FAILED): the core is to hold MEDIUM ERROR sense for LUN out[0], LBA
 *     out[1] (low 32 bits) and out[2] (high), before it sees the next CBW. 0: STOP is set
 *     or GO is 0.
 *     -errno: endpoint I/O failed (out[0]: 0 reading a CBW, 1 writing bulk-IN, 2 reading
 *     data-out).
 *   release() -> 0: drop this thread's mapping and AIO context (before the thread ends).
 *   cancelIn(ctl) -> number: for the main thread, when it performs a Bulk-Only Mass Storage
 *     Reset (after adding to RESET, before it completes the control request): cancels the
 *     bulk-IN requests the loop serving `ctl` has queued (a READ's data, a CSW), so none of
 *     them is taken as the data or CSW of a command after the reset. Returns how many it
 *     cancelled.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/aio_abi.h>

/* ---- Node-API (stable C ABI) ------------------------------------------------------------ */
typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok == 0 */
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
typedef enum {
  napi_int8_array, napi_uint8_array, napi_uint8_clamped_array, napi_int16_array, napi_uint16_array,
  napi_int32_array, napi_uint32_array, napi_float32_array, napi_float64_array,
  napi_bigint64_array, napi_biguint64_array
} napi_typedarray_type;

extern napi_status napi_get_cb_info(napi_env, napi_callback_info, size_t *, napi_value *, napi_value *, void **);
extern napi_status napi_get_value_int32(napi_env, napi_value, int32_t *);
extern napi_status napi_create_int32(napi_env, int32_t, napi_value *);
extern napi_status napi_get_typedarray_info(napi_env, napi_value, napi_typedarray_type *, size_t *, void **, napi_value *, size_t *);
extern napi_status napi_create_function(napi_env, const char *, size_t, napi_callback, void *, napi_value *);
extern napi_status napi_set_named_property(napi_env, napi_value, const char *, napi_value);

static napi_value int_value(napi_env env, int32_t v) {
  napi_value r = NULL;
  napi_create_int32(env, v, &r);
  return r;
}

/* A TypedArray argument of the given type: its data and element count. */
static int array_arg(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *count) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, count, data, &ab, &offset) != 0 || type != want) return 0;
  return 1;
}

/* ---- the control block ------------------------------------------------------------------ */
/* Indices, in the order of LAYOUT in bot-fast-worker.ts. */
enum { GO, BUSY, RESET, STOP, MPS, FAST_READS, FAST_WRITES, FORWARDED, MIB, BYTES, LEASES, LEASE_STRIDE,
       L_FLAGS, L_FD, L_BLOCK_SIZE, L_BLOCKS_LO, L_BLOCKS_HI, L_MAX_BLOCKS, IN_BUSY, LAYOUT_WORDS };
enum { LEASE_READ = 1, LEASE_WRITE = 2, LEASE_WRITE_THROUGH = 4 };

struct ctlblock {
  int32_t *w;
  size_t words;
  int32_t at[LAYOUT_WORDS];
};

static int32_t ld(const struct ctlblock *c, int i) { return __atomic_load_n(&c->w[c->at[i]], __ATOMIC_SEQ_CST); }
static void st(const struct ctlblock *c, int i, int32_t v) { __atomic_store_n(&c->w[c->at[i]], v, __ATOMIC_SEQ_CST); }
static int32_t add(const struct ctlblock *c, int i, int32_t v) { return __atomic_fetch_add(&c->w[c->at[i]], v, __ATOMIC_SEQ_CST); }
static int32_t *lease(const struct ctlblock *c, int lun) { return &c->w[c->at[LEASES] + lun * c->at[LEASE_STRIDE]]; }

/* ---- per-thread state ------------------------------------------------------------------- */
#define WINDOW (16L << 20) /* mapped page cache counts in RSS (RssFile): keep it modest */
#define MIN_TRANSFER (16 * 1024)
#define MAX_PIECES 128 /* a READ's pieces in flight at most */
static __thread struct {
  /* The mapping window of a backstore. */
  void *ptr;
  size_t len;
  off_t start;
  int fd;
  dev_t dev;
  ino_t ino;
  /* The AIO context for READ data (0: not set up yet, -1: unavailable). */
  aio_context_t aio;
  int aio_failed;
  /* A CBW already read: a data-out read that a reset turned into the next CBW. */
  uint8_t pending[1024];
  int pending_len;
  /* Largest single endpoint transfer; halved when f_fs cannot allocate (ENOMEM). */
  size_t max_transfer;
  /* A READ that failed midway (SENSE): its LUN and the first LBA the host did not get. */
  int sense_lun;
  uint64_t sense_lba;
} t = { NULL, 0, 0, -1, 0, 0, 0, 0, { 0 }, 0, 1024 * 1024, 0, 0 };

/* Round up to a multiple of a power of two (no division: a 32-bit ARM has no divide
   instruction, and libgcc's helpers are built for ARMv7, which a Pi Zero cannot run). */
static size_t round_up(size_t n, size_t pow2) { return (n + pow2 - 1) & ~(pow2 - 1); }

static void unmap_window(void) {
  if (t.ptr != NULL) munmap(t.ptr, t.len);
  t.ptr = NULL;
  t.fd = -1;
}

/* The address of bytes [pos, pos+len) of fd in a shared read-only mapping, or NULL (then the
   READ takes the pread path; LUNBOX_USB_NO_MMAP=1 forces that, for tests and diagnosis). */
static const uint8_t *mapped(int fd, off_t pos, size_t len) {
  static __thread int no_mmap = -1;
  if (no_mmap < 0) no_mmap = getenv("LUNBOX_USB_NO_MMAP") != NULL;
  if (no_mmap) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) return NULL;
  if (t.ptr != NULL && (t.fd != fd || t.dev != st.st_dev || t.ino != st.st_ino)) unmap_window();
  if (t.ptr == NULL || pos < t.start || (size_t)(pos - t.start) + len > t.len) {
    unmap_window();
    off_t start = pos & ~(off_t)(WINDOW - 1);
    size_t size = WINDOW;
    if ((size_t)(pos - start) + len > size) size = (size_t)(pos - start) + len;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = round_up(size, page);
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, start);
    if (p == MAP_FAILED) return NULL;
    t.ptr = p;
    t.len = size;
    t.start = start;
    t.fd = fd;
    t.dev = st.st_dev;
    t.ino = st.st_ino;
  }
  return (const uint8_t *)t.ptr + (pos - t.start);
}

static int aio_ready(void) {
  static __thread int no_aio = -1;
  if (no_aio < 0) no_aio = getenv("LUNBOX_USB_NO_AIO") != NULL; /* for tests: blocking I/O only */
  if (t.aio_failed || no_aio) return 0;
  if (t.aio == 0 && syscall(SYS_io_setup, (unsigned)MAX_PIECES + 16U, &t.aio) != 0) {
    t.aio = 0;
    t.aio_failed = 1;
    return 0;
  }
  return 1;
}

/* ---- the plan (the same rules as planFast in bot-fast-worker.ts) ----------------------- */
struct plan {
  int write, lun, sync, fd;
  uint32_t tag, bytes, block_size;
  uint64_t position;
};

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }

static int plan_fast(const uint8_t *b, int n, int lun_count, const struct ctlblock *c, uint32_t max_bytes, struct plan *p) {
  if (n != 31 || le32(b) != 0x43425355) return 0;
  int flags = b[12], lun = b[13], cb_length = b[14];
  if ((flags & 0x7f) != 0 || lun >= lun_count || cb_length > 16) return 0;
  const uint8_t *cdb = b + 15;
  uint64_t lba;
  uint32_t blocks;
  int op = cdb[0];
  if (op == 0x28 || op == 0x2a) {
    if (cb_length < 10 || cdb[6] != 0 || cdb[9] != 0) return 0;
    lba = be32(cdb + 2);
    blocks = (uint32_t)cdb[7] << 8 | cdb[8];
  } else if (op == 0x88 || op == 0x8a) {
    if (cb_length < 16 || cdb[14] != 0 || cdb[15] != 0) return 0;
    uint32_t hi = be32(cdb + 2);
    if (hi >= 0x200000) return 0;
    lba = (uint64_t)hi << 32 | be32(cdb + 6);
    blocks = be32(cdb + 10);
  } else {
    return 0;
  }
  int write = op == 0x2a || op == 0x8a;
  int b1 = cdb[1];
  if ((b1 & ~0x18) != 0 || blocks == 0) return 0;
  const int32_t *l = lease(c, lun);
  int32_t lf = __atomic_load_n(&l[c->at[L_FLAGS]], __ATOMIC_SEQ_CST);
  if ((lf & (write ? LEASE_WRITE : LEASE_READ)) == 0) return 0;
  uint32_t block_size = (uint32_t)l[c->at[L_BLOCK_SIZE]];
  uint64_t capacity = (uint64_t)(uint32_t)l[c->at[L_BLOCKS_LO]] + ((uint64_t)(uint32_t)l[c->at[L_BLOCKS_HI]] << 32);
  if (lba + blocks > capacity || blocks > (uint32_t)l[c->at[L_MAX_BLOCKS]]) return 0;
  uint64_t bytes = (uint64_t)blocks * block_size;
  if (bytes != le32(b + 8) || bytes > max_bytes) return 0;
  if (((flags & 0x80) != 0) == write) return 0;
  p->write = write;
  p->lun = lun;
  p->tag = le32(b + 4);
  p->fd = l[c->at[L_FD]];
  p->position = lba * block_size;
  p->bytes = (uint32_t)bytes;
  p->block_size = block_size;
  p->sync = write && ((b1 & 0x08) != 0 || (lf & LEASE_WRITE_THROUGH) != 0);
  return 1;
}

/* ---- serving ---------------------------------------------------------------------------- */
static void unbusy(const struct ctlblock *c) { st(c, BUSY, 0); }

/* BUSY, then the lease again: a revoke either sees BUSY and waits, or this sees it cleared. */
static int claim(const struct ctlblock *c, int lun, int bit) {
  st(c, BUSY, 1);
  if ((__atomic_load_n(&lease(c, lun)[c->at[L_FLAGS]], __ATOMIC_SEQ_CST) & bit) != 0) return 1;
  unbusy(c);
  return 0;
}

static void count(const struct ctlblock *c, int slot, uint32_t bytes) {
  add(c, slot, 1);
  int32_t b = add(c, BYTES, (int32_t)bytes) + (int32_t)bytes;
  if (b >= 1048576) {
    add(c, BYTES, -1048576 * (b / 1048576));
    add(c, MIB, b / 1048576);
  }
}

/* f_fs could not allocate a request of `tried` bytes (ENOMEM): halve the largest transfer,
   down to 16 KiB. 0 when it cannot shrink further. */
static int shrink_transfer(size_t tried) {
  if (tried <= MIN_TRANSFER) return 0;
  t.max_transfer = (tried / 2 / MIN_TRANSFER) * MIN_TRANSFER;
  if (t.max_transfer < MIN_TRANSFER) t.max_transfer = MIN_TRANSFER;
  return 1;
}

/* All of [buf, buf+len) to / from fd at pos; bytes moved (short on an error or end of file). */
static size_t pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t pos) {
  size_t put = 0;
  while (put < len) {
    ssize_t r = pwrite(fd, buf + put, len - put, (off_t)(pos + put));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    put += (size_t)r;
  }
  return put;
}

static size_t pread_all(int fd, uint8_t *buf, size_t len, uint64_t pos) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(fd, buf + got, len - got, (off_t)(pos + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

/* Write len bytes at p, then tail, to fd (blocking), splitting on ENOMEM. Bytes written or
   -errno; *sent: how many of p's bytes went out before a failure. */
static long write_all(int fd, const uint8_t *p, size_t len, const uint8_t *tail, size_t tail_len, size_t *sent) {
  size_t done = 0;
  *sent = 0;
  for (;;) {
    size_t piece = len - done < t.max_transfer ? len - done : t.max_transfer;
    int last = done + piece == len;
    struct iovec iov[2] = { { (void *)(p + done), piece }, { (void *)tail, tail_len } };
    ssize_t r = writev(fd, iov, last && tail_len > 0 ? 2 : 1);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOMEM && shrink_transfer(piece)) continue;
      return -errno;
    }
    done += piece;
    *sent = done;
    if (last) return (long)(len + tail_len);
  }
}

/* A bulk-IN write (send_aio, write_in) found a reset had come first: nothing was sent. */
#define IN_ABANDONED 4

/*
 * A blocking bulk-IN write, which no AIO cancel can take back (the CSW after a READ that failed
 * midway; every bulk-IN write when the kernel has no AIO): IN_BUSY meanwhile, set before RESET
 * is looked at, as the JavaScript loop does. A reset bumps RESET, then looks at IN_BUSY: either
 * this sees the reset and writes nothing (IN_ABANDONED), or the reset sees the write and is
 * refused, so that the host resets the port, which ends it (BotFastPath.reset).
 */
static long write_in(const struct ctlblock *c, int32_t reset_at, int fd, const uint8_t *p, size_t len, const uint8_t *tail,
                     size_t tail_len, size_t *sent) {
  st(c, IN_BUSY, 1);
  long r;
  if (ld(c, RESET) != reset_at) {
    *sent = 0;
    r = IN_ABANDONED;
  } else {
    r = write_all(fd, p, len, tail, tail_len, sent);
  }
  st(c, IN_BUSY, 0);
  return r;
}

static __thread uint8_t csw[13];

static void set_csw(uint32_t tag, int status, uint32_t residue) {
  csw[0] = 0x55; csw[1] = 0x53; csw[2] = 0x42; csw[3] = 0x53;
  csw[4] = (uint8_t)tag; csw[5] = (uint8_t)(tag >> 8); csw[6] = (uint8_t)(tag >> 16); csw[7] = (uint8_t)(tag >> 24);
  csw[8] = (uint8_t)residue; csw[9] = (uint8_t)(residue >> 8); csw[10] = (uint8_t)(residue >> 16); csw[11] = (uint8_t)(residue >> 24);
  csw[12] = (uint8_t)status;
}

/* FORWARD: the core answers; DONE; ABANDONED: a reset; SENSE: a READ failed midway and was
   answered here, its sense (t.sense_lun, t.sense_lba) is for the core to hold. */
enum { FORWARD = 1, DONE = 2, ABANDONED = 4, SENSE = 8 };

/* A READ's data is queued in pieces, so the host starts taking the first while f_fs copies
   the next (the kernel's function does the same with its 16 KiB buffers). */
static __thread struct iocb piece_cb[MAX_PIECES];
static __thread struct iovec piece_iov[MAX_PIECES][2];

/* The piece size for a transfer of len bytes: 16 KiB for READ data, 32 KiB for WRITE data
   (measured best in the VM; LUNBOX_USB_PIECE_KIB, read once, sets both for experiments), at
   most 64 pieces (fewer than MAX_PIECES), a whole number of packets, at most max_transfer. */
static size_t piece_for(const struct ctlblock *c, size_t len, size_t dflt) {
  static __thread long forced = -1;
  if (forced < 0) {
    const char *e = getenv("LUNBOX_USB_PIECE_KIB");
    long k = e != NULL ? strtol(e, NULL, 10) : 0;
    forced = k >= 4 && k <= 1024 ? k * 1024 : 0;
  }
  size_t piece = forced > 0 ? (size_t)forced : dflt;
  if (piece < (len >> 6) + 1) piece = (len >> 6) + 1;
  piece = round_up(piece, (size_t)ld(c, MPS));
  return piece > t.max_transfer ? t.max_transfer : piece;
}

/* Bulk-IN requests in piece_cb: how many were queued, how many are not yet reaped (a READ's
   pieces and CSW), and the RESET count they were queued under. */
static __thread int in_count;
static __thread int in_queued;
static __thread int32_t in_reset_at;

/*
 * What each loop has queued on bulk-IN, for cancelIn() on the main thread. The host may take
 * the requests still queued after a Bulk-Only reset as the next command's data stage, and it
 * may do so before this loop sees the next CBW: only cancelling them before the reset's
 * control request completes keeps them out of it. One entry per control block (a worker per
 * gadget), looked up by the block's address, which is the same in every thread. The lock
 * also orders a submit against a reset: a loop queues only under the RESET count it checked
 * with the lock held, so whatever it queued before a reset, the reset's cancelIn() finds.
 */
#define IN_SLOTS 8
static pthread_mutex_t in_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  const int32_t *ctl;
  aio_context_t aio;
  struct iocb *cb;
  int count;
} in_shared[IN_SLOTS];

/* This thread's entry for control block c (taken if free), or -1 (all taken: cancelIn cannot
   reach it, and settle_in still cancels at the next CBW). Called with in_lock held. */
static int in_slot(const struct ctlblock *c) {
  int free_at = -1;
  for (int i = 0; i < IN_SLOTS; i++) {
    if (in_shared[i].ctl == c->w) return i;
    if (in_shared[i].ctl == NULL && free_at < 0) free_at = i;
  }
  if (free_at >= 0) in_shared[free_at].ctl = c->w;
  return free_at;
}

/* Queue one bulk-IN request unless a reset or stop came since reset_at. 1 queued, 0 not (a
   reset), -1 io_submit failed (errno). */
static int submit_in(const struct ctlblock *c, struct iocb *cb, int32_t reset_at) {
  pthread_mutex_lock(&in_lock);
  int r = 0;
  if (ld(c, RESET) == reset_at && ld(c, STOP) == 0) {
    struct iocb *list[1] = { cb };
    r = syscall(SYS_io_submit, t.aio, 1L, list) == 1 ? 1 : -1;
    int e = errno;
    int s = in_slot(c);
    if (s >= 0 && r == 1) {
      in_shared[s].aio = t.aio;
      in_shared[s].cb = piece_cb;
      in_shared[s].count = (int)(cb - piece_cb) + 1;
    }
    errno = e;
  }
  pthread_mutex_unlock(&in_lock);
  return r;
}

/* All of this thread's bulk-IN requests are reaped: cancelIn() must not touch the iocbs. */
static void in_reaped(const struct ctlblock *c) {
  pthread_mutex_lock(&in_lock);
  for (int i = 0; i < IN_SLOTS; i++)
    if (in_shared[i].ctl == c->w) in_shared[i].count = 0;
  pthread_mutex_unlock(&in_lock);
}

/*
 * The kernel's completion ring of an AIO context, mapped at the context's address (fs/aio.c;
 * libaio reads it the same way). A copy that fails when f_fs queues a bulk-IN piece (EFAULT:
 * the backstore could not be read into the mapping) does not fail io_submit: it is completed
 * at once, with the error, before io_submit returns. Peeking here finds it without a syscall.
 */
struct aio_ring_head {
  unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};
#define AIO_RING_MAGIC 0xa10a10a1U

/* 1 when a completion with an error is in the ring (peeked, not taken), 0 when none, -1 when
   the ring is not one this code knows (then ask the kernel). */
static int aio_error_waiting(void) {
  const struct aio_ring_head *r = (const struct aio_ring_head *)(uintptr_t)t.aio;
  if (r->magic != AIO_RING_MAGIC || r->header_length != sizeof *r) return -1;
  unsigned nr = r->nr;
  unsigned head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE), tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
  if (head >= nr || tail >= nr) return -1;
  const struct io_event *ev = (const struct io_event *)(r + 1);
  for (unsigned i = head; i != tail;) {
    if ((int64_t)ev[i].res < 0) return 1;
    if (++i == nr) i = 0;
  }
  return 0;
}

/* Take the bulk-IN completions already there (none waited for). The first error among them
   (a negative errno), or 0. */
static long take_failed_in(void) {
  long failed = 0;
  struct io_event ev[16];
  struct timespec now = { 0, 0 };
  for (;;) {
    long got = syscall(SYS_io_getevents, t.aio, 0L, 16L, ev, &now);
    if (got <= 0) return failed;
    for (long i = 0; i < got; i++) {
      in_queued--;
      if ((int64_t)ev[i].res < 0 && failed == 0) failed = (long)ev[i].res;
    }
  }
}

/*
 * Queue `len` bytes at p on bulk-IN with AIO, piece by piece, then the CSW (with the last piece
 * when `with_csw`, else on its own), and leave the backstore (BUSY): f_fs copied each piece
 * when it queued it. The worker does not wait for the host to take them: it goes on to read
 * the next CBW, which comes only after the host has the CSW, and settle_in reaps them then.
 * 0 when all is queued; 1 when f_fs could not copy the first piece (nothing went out); 3 when
 * it could not copy a later one (*sent: the bytes of the pieces queued before it, which the
 * host is taking; nothing after it is queued); IN_ABANDONED when a reset came first (what was
 * queued before it, cancelIn has cancelled); -errno on failure.
 */
static long send_aio(const struct ctlblock *c, int in_fd, const uint8_t *p, size_t len, int with_csw, int32_t reset_at,
                     size_t *sent) {
  size_t mps = (size_t)ld(c, MPS);
  size_t piece = piece_for(c, len, 16 * 1024);
  int queued = 0;
  long fail = 0;
  size_t done = 0;
  *sent = 0;
  in_reset_at = reset_at;
  while (done < len || (!with_csw && fail == 0 && done == len)) {
    int csw_only = done == len;
    size_t n = csw_only ? 0 : (len - done < piece ? len - done : piece);
    int last = done + n == len;
    struct iocb *cb = &piece_cb[queued];
    piece_iov[queued][0].iov_base = csw_only ? (void *)csw : (void *)(p + done);
    piece_iov[queued][0].iov_len = csw_only ? 13 : n;
    piece_iov[queued][1].iov_base = csw;
    piece_iov[queued][1].iov_len = 13;
    memset(cb, 0, sizeof *cb);
    cb->aio_data = (uint64_t)queued;
    cb->aio_lio_opcode = IOCB_CMD_PWRITEV;
    cb->aio_fildes = (uint32_t)in_fd;
    cb->aio_buf = (uint64_t)(uintptr_t)piece_iov[queued];
    cb->aio_nbytes = !csw_only && last && with_csw ? 2 : 1;
    int q = submit_in(c, cb, reset_at);
    if (q == 0) {
      fail = IN_ABANDONED; /* a reset: the host abandoned the command */
      break;
    }
    if (q < 0) {
      if (errno == ENOMEM && piece > MIN_TRANSFER && !csw_only) {
        piece = round_up(piece / 2, mps);
        continue;
      }
      fail = csw_only ? -errno : errno == EFAULT || errno == EIO ? (queued == 0 ? 1 : 3) : -errno;
      break;
    }
    queued++;
    in_count = queued;
    in_queued++;
    if (!csw_only && aio_error_waiting() != 0) {
      long bad = take_failed_in();
      if (bad == -EFAULT || bad == -EIO) {
        /* This piece's copy failed (the earlier ones were copied when they were queued):
           it and nothing after it went out. */
        fail = queued == 1 ? 1 : 3;
        break;
      }
      if (bad < 0) {
        fail = bad; /* the endpoint failed (a disconnect, say) */
        break;
      }
    }
    if (csw_only) break;
    done += n;
    *sent = done;
    if (queued == MAX_PIECES - 1 && done < len) { fail = -E2BIG; break; }
  }
  unbusy(c); /* f_fs copied the data when it queued it: the backstore is done with */
  return fail;
}

/*
 * Reap the bulk-IN requests still queued: before the next command (or the core) uses bulk-IN.
 * If a Bulk-Only Mass Storage Reset came since they were queued, the host abandoned them:
 * cancelIn has cancelled them already (and they are cancelled here again, should the addon
 * not be loaded on the main thread), so none is taken as a later command's data. 0, 2 (cancelled after a
 * reset), or -errno (one failed).
 */
static long settle_in(const struct ctlblock *c) {
  long result = 0;
  int left = in_queued;
  int cancelled = 0;
  struct io_event ev[16];
  while (left > 0) {
    if (!cancelled && (ld(c, RESET) != in_reset_at || ld(c, STOP) != 0)) {
      struct io_event gone;
      for (int i = 0; i < in_count; i++) syscall(SYS_io_cancel, t.aio, &piece_cb[i], &gone);
      cancelled = 1;
    }
    struct timespec ts = { 0, 100 * 1000000L };
    long got = syscall(SYS_io_getevents, t.aio, (long)(left < 16 ? left : 16), 16L, ev, &ts);
    if (got < 0 && errno != EINTR) {
      result = -errno;
      break;
    }
    for (long i = 0; i < got; i++) {
      left--;
      if (ev[i].res < 0 && result == 0) result = (long)ev[i].res;
    }
  }
  in_queued = 0;
  in_count = 0;
  in_reaped(c);
  if (cancelled || ld(c, RESET) != in_reset_at) return 2;
  return result;
}

/* Halt bulk-IN (I/O the wrong way on it), retrying while dummy_hcd still has requests queued. */
static void halt_in(int in_fd) {
  uint8_t one;
  for (int i = 0; i < 1000; i++) {
    if (read(in_fd, &one, 1) < 0 && errno == EAGAIN) {
      struct timespec ts = { 0, 2 * 1000000L };
      nanosleep(&ts, NULL);
      continue;
    }
    return;
  }
}

/*
 * A READ whose backstore failed after `sent` bytes of its data went out: the core cannot
 * answer it any more (it would send the data from the start). It is answered here as
 * f_mass_storage answers an unrecoverable read (the Bulk-Only case Hi > Di): the host takes
 * what is queued, bulk-IN is halted, and the CSW says FAILED with the residue; the core holds
 * the sense (MEDIUM ERROR, UNRECOVERED READ ERROR at the first LBA not sent) for the REQUEST
 * SENSE that follows. SENSE, DONE after a reset (the host abandoned the command), or -errno.
 */
static long read_failed(const struct ctlblock *c, const struct plan *p, int in_fd, size_t sent, int32_t reset_at) {
  /* Wait for the host to take the pieces already queued: a UDC may halt an endpoint with
     requests on it, and they would go out after the halt is cleared, where the CSW belongs. */
  long settled = settle_in(c);
  if (settled == 2) return DONE;
  if (settled < 0) return settled;
  halt_in(in_fd);
  set_csw(p->tag, 1, p->bytes - (uint32_t)sent);
  size_t n;
  long w = write_in(c, reset_at, in_fd, csw, 13, NULL, 0, &n);
  if (w == IN_ABANDONED) return DONE;
  if (w < 0) return w;
  uint64_t lba = p->position + sent;
  for (uint32_t bs = p->block_size; bs > 1; bs >>= 1) lba >>= 1; /* block sizes are powers of two */
  t.sense_lun = p->lun;
  t.sense_lba = lba;
  return SENSE;
}

/* A READ: one copy, from the mapping. FORWARD when the core must serve it, DONE, SENSE
   (read_failed), or -errno. */
static long serve_read(const struct ctlblock *c, const struct plan *p, int in_fd, uint8_t *data, int32_t reset_at) {
  if (!claim(c, p->lun, LEASE_READ)) return FORWARD;
  int with_csw = (p->bytes & ((uint32_t)ld(c, MPS) - 1)) == 0;
  set_csw(p->tag, 0, 0);
  const uint8_t *src = mapped(p->fd, (off_t)p->position, p->bytes);
  if (src == NULL) {
    /* A backstore that cannot be mapped: pread into the buffer, as the JavaScript loop does. */
    if (pread_all(p->fd, data, p->bytes, p->position) < p->bytes) {
      unbusy(c);
      return FORWARD; /* the core reads it again and answers */
    }
    src = data;
  }
  if (aio_ready()) {
    size_t sent;
    long r = send_aio(c, in_fd, src, p->bytes, with_csw, reset_at, &sent);
    if (r == 1) {
      /* An I/O error reading the backstore before any data went out: the core answers it,
         unless a reset has abandoned the command meanwhile. */
      if (settle_in(c) == 2) return DONE;
      return FORWARD;
    }
    if (r == 3) return read_failed(c, p, in_fd, sent, reset_at);
    if (r == IN_ABANDONED) return DONE; /* settle_in reaps what was cancelled */
    if (r < 0) {
      settle_in(c);
      return r;
    }
    count(c, FAST_READS, p->bytes);
    return DONE; /* the CSW is queued: settle_in reaps it with the next CBW */
  } else {
    /* Without AIO: blocking writes, the backstore busy until the host has the data (a revoke
       waits that long). */
    size_t sent;
    long r = write_in(c, reset_at, in_fd, src, p->bytes, with_csw ? csw : NULL, with_csw ? 13 : 0, &sent);
    unbusy(c);
    if (r == IN_ABANDONED) return DONE;
    if ((r == -EFAULT || r == -EIO) && sent == 0) return FORWARD; /* the core answers the error */
    if (r == -EFAULT || r == -EIO) return read_failed(c, p, in_fd, sent, reset_at);
    if (r < 0) return r;
  }
  if (!with_csw) {
    size_t sent;
    long r = write_in(c, reset_at, in_fd, csw, 13, NULL, 0, &sent);
    if (r == IN_ABANDONED) return DONE;
    if (r < 0) return r;
  }
  count(c, FAST_READS, p->bytes);
  return DONE;
}

/*
 * A WRITE with AIO, pipelined as the kernel's function does it: every piece's read is queued
 * at once, and each piece goes to the backstore (under the lease: claim, pwrite, BUSY
 * cleared) as soon as it has arrived, while the next ones arrive. BUSY is not held while
 * waiting for the host. Should the lease be taken back or a pwrite fail midway, the rest is
 * only collected and the core writes the whole data again (writing the same bytes twice is
 * harmless). A short piece ends the data: the reads after it are cancelled (none takes the
 * next CBW) and the core answers, as it does for a short data-out without AIO; the pieces
 * written by then leave the range as a failed WRITE may. A Bulk-Only Mass Storage Reset
 * cancels the rest; a short read holding what came after the reset is the next CBW.
 * FORWARD (*out_len: the data-out held in `data`), DONE (the CSW to send), ABANDONED (a
 * reset), -errno.
 */
static __thread long piece_res[MAX_PIECES];

/*
 * A data-out read that ended after a Bulk-Only reset holds the host's next CBW at its end: the
 * abandoned data-out came in whole packets, the CBW is the short packet after them (whatever
 * part of the data-out had arrived before the reset is in front of it). Keep that for the next
 * command.
 */
static void keep_next_cbw(const uint8_t *got, size_t len, size_t mps) {
  size_t tail = len & (mps - 1);
  if (tail == 0 || tail > sizeof t.pending) return;
  memcpy(t.pending, got + len - tail, tail);
  t.pending_len = (int)tail;
}
#define PIECE_PENDING LONG_MIN

static void cancel_pieces(int queued) {
  struct io_event gone;
  for (int i = 0; i < queued; i++)
    if (piece_res[i] == PIECE_PENDING) syscall(SYS_io_cancel, t.aio, &piece_cb[i], &gone);
}

static long write_aio(const struct ctlblock *c, const struct plan *p, int out_fd, uint8_t *data, int32_t reset_at, int32_t *out_len) {
  size_t len = p->bytes;
  size_t mps = (size_t)ld(c, MPS);
  size_t piece = piece_for(c, len, 32 * 1024);
  int queued = 0;
  long fail = 0;
  size_t off = 0;
  while (off < len && queued < MAX_PIECES) {
    size_t n = len - off < piece ? len - off : piece;
    struct iocb *cb = &piece_cb[queued];
    memset(cb, 0, sizeof *cb);
    cb->aio_data = (uint64_t)queued;
    cb->aio_lio_opcode = IOCB_CMD_PREAD;
    cb->aio_fildes = (uint32_t)out_fd;
    cb->aio_buf = (uint64_t)(uintptr_t)(data + off);
    cb->aio_nbytes = n;
    piece_res[queued] = PIECE_PENDING;
    struct iocb *list[1] = { cb };
    if (syscall(SYS_io_submit, t.aio, 1L, list) != 1) {
      if (errno == ENOMEM && piece > MIN_TRANSFER) {
        piece = round_up(piece / 2, mps);
        continue;
      }
      fail = -errno;
      break;
    }
    queued++;
    off += n;
  }
  if (off < len && fail == 0) fail = -E2BIG;
  int left = queued, next = 0, ended = fail != 0, reset = 0, collect = 0;
  size_t got = 0;
  if (ended) cancel_pieces(queued);
  struct io_event ev[16];
  while (left > 0) {
    struct timespec ts = { 0, 100 * 1000000L };
    long n = syscall(SYS_io_getevents, t.aio, 1L, 16L, ev, &ts);
    if (n < 0 && errno != EINTR) return -errno;
    for (long i = 0; i < n; i++) {
      uint64_t k = ev[i].data;
      if (k < (uint64_t)queued && piece_res[k] == PIECE_PENDING) {
        piece_res[k] = (long)ev[i].res;
        left--;
      }
    }
    if (!reset && (ld(c, RESET) != reset_at || ld(c, STOP) != 0)) {
      reset = 1;
      ended = 1;
      cancel_pieces(queued);
    }
    while (!ended && next < queued && piece_res[next] != PIECE_PENDING) {
      long r = piece_res[next];
      if (r < 0) {
        fail = r;
        ended = 1;
        cancel_pieces(queued);
        break;
      }
      const uint8_t *at = (const uint8_t *)(uintptr_t)piece_cb[next].aio_buf;
      if (!collect && r > 0) {
        if (claim(c, p->lun, LEASE_WRITE)) {
          size_t put = pwrite_all(p->fd, at, (size_t)r, p->position + (uint64_t)(at - data));
          unbusy(c);
          if (put < (size_t)r) collect = 1;
        } else {
          collect = 1;
        }
      }
      got += (size_t)r;
      if ((size_t)r < piece_cb[next++].aio_nbytes) {
        ended = 1; /* a short packet: the host sent less than it said */
        cancel_pieces(queued);
      }
    }
  }
  if (reset) {
    for (int i = 0; i < queued; i++) {
      long r = piece_res[i];
      if (r > 0 && (size_t)r < piece_cb[i].aio_nbytes) {
        keep_next_cbw((const uint8_t *)(uintptr_t)piece_cb[i].aio_buf, (size_t)r, mps);
        break;
      }
    }
    return ABANDONED;
  }
  if (fail < 0) return fail;
  *out_len = (int32_t)got;
  if (got < len || collect) return FORWARD;
  if (p->sync) {
    if (!claim(c, p->lun, LEASE_WRITE)) return FORWARD;
    int bad = fdatasync(p->fd) != 0;
    unbusy(c);
    if (bad) return FORWARD;
  }
  return DONE;
}

/* A WRITE without AIO: data-out into `data`, then the backstore. FORWARD (out_len: data-out held), DONE, -errno. */
static long serve_write(const struct ctlblock *c, const struct plan *p, int in_fd, int out_fd, uint8_t *data,
                        int32_t reset_at, int32_t *out_len) {
  if (aio_ready()) {
    long r = write_aio(c, p, out_fd, data, reset_at, out_len);
    if (r == ABANDONED) return DONE; /* by Reset Recovery: no CSW */
    if (r != DONE) return r;
    set_csw(p->tag, 0, 0);
    /* The CSW is queued as a READ's is, so a reset can take it back (cancelIn) should the
       host not take it; settle_in reaps it with the next CBW. */
    size_t sent;
    long w = send_aio(c, in_fd, NULL, 0, 0, reset_at, &sent);
    if (w == IN_ABANDONED) return DONE;
    if (w < 0) {
      settle_in(c);
      return w;
    }
    count(c, FAST_WRITES, p->bytes);
    return DONE;
  }
  uint32_t got = 0;
  while (got < p->bytes) {
    size_t ask = p->bytes - got < t.max_transfer ? p->bytes - got : t.max_transfer;
    ssize_t r = read(out_fd, data + got, ask);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOMEM && shrink_transfer(ask)) continue;
      return -errno;
    }
    if (ld(c, RESET) != reset_at) {
      /* Reset Recovery happened while this read waited: it ends with the next CBW. */
      if (r > 0) keep_next_cbw(data + got, (size_t)r, (size_t)ld(c, MPS));
      return DONE;
    }
    got += (uint32_t)r;
    if ((size_t)r < ask) break; /* a short packet: the host sent less than it said */
  }
  *out_len = (int32_t)got;
  if (got < p->bytes || !claim(c, p->lun, LEASE_WRITE)) return FORWARD;
  if (pwrite_all(p->fd, data, p->bytes, p->position) < p->bytes || (p->sync && fdatasync(p->fd) != 0)) {
    /* The core writes it again from the same data and answers (MEDIUM ERROR if it fails too). */
    unbusy(c);
    return FORWARD;
  }
  unbusy(c);
  set_csw(p->tag, 0, 0);
  size_t sent;
  long r = write_in(c, reset_at, in_fd, csw, 13, NULL, 0, &sent);
  if (r == IN_ABANDONED) return DONE;
  if (r < 0) return r;
  count(c, FAST_WRITES, p->bytes);
  return DONE;
}

static napi_value js_serve(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  size_t argc = 8;
  struct ctlblock c;
  int32_t *layout, *out;
  size_t layout_n, out_n, cbw_n, data_n;
  uint8_t *cbw, *data;
  int32_t in_fd, out_fd, lun_count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 8 ||
      !array_arg(env, argv[0], napi_int32_array, (void **)&c.w, &c.words) ||
      !array_arg(env, argv[1], napi_int32_array, (void **)&layout, &layout_n) || layout_n != LAYOUT_WORDS ||
      napi_get_value_int32(env, argv[2], &in_fd) != 0 || napi_get_value_int32(env, argv[3], &out_fd) != 0 ||
      napi_get_value_int32(env, argv[4], &lun_count) != 0 ||
      !array_arg(env, argv[5], napi_uint8_array, (void **)&cbw, &cbw_n) || cbw_n < 1024 ||
      !array_arg(env, argv[6], napi_uint8_array, (void **)&data, &data_n) ||
      !array_arg(env, argv[7], napi_int32_array, (void **)&out, &out_n) || out_n < 3)
    return int_value(env, -EINVAL);
  memcpy(c.at, layout, sizeof c.at);
  if (lun_count < 1 || (size_t)(c.at[LEASES] + lun_count * c.at[LEASE_STRIDE]) > c.words) return int_value(env, -EINVAL);
  for (int i = 0; i < LEASES; i++)
    if (c.at[i] < 0 || (size_t)c.at[i] >= c.words) return int_value(env, -EINVAL);
  if (c.at[IN_BUSY] < 0 || (size_t)c.at[IN_BUSY] >= c.words) return int_value(env, -EINVAL);

  for (;;) {
    if (ld(&c, STOP) != 0 || ld(&c, GO) == 0) {
      settle_in(&c);
      return int_value(env, 0);
    }
    int n;
    if (t.pending_len > 0) {
      n = t.pending_len;
      memcpy(cbw, t.pending, (size_t)n);
      t.pending_len = 0;
    } else {
      ssize_t r = read(out_fd, cbw, (size_t)ld(&c, MPS));
      if (r < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        settle_in(&c); /* what was queued failed too, or was cancelled: not this session's */
        out[0] = 0;
        return int_value(env, -e);
      }
      n = (int)r;
    }
    /* The previous READ's data and CSW: done on the bus (the host sent this CBW after the CSW),
       or abandoned by a reset and cancelled. */
    long settled = settle_in(&c);
    if (ld(&c, STOP) != 0) return int_value(env, 0);
    if (settled < 0) {
      out[0] = 1;
      return int_value(env, (int32_t)settled);
    }
    struct plan p;
    int32_t held = -1;
    long r = FORWARD;
    if (plan_fast(cbw, n, lun_count, &c, (uint32_t)data_n, &p)) {
      int32_t reset_at = ld(&c, RESET);
      r = p.write ? serve_write(&c, &p, in_fd, out_fd, data, reset_at, &held) : serve_read(&c, &p, in_fd, data, reset_at);
      if (r < 0) {
        out[0] = p.write ? 2 : 1;
        return int_value(env, (int32_t)r);
      }
    }
    if (r == FORWARD) {
      st(&c, GO, 0);
      add(&c, FORWARDED, 1);
      out[0] = n;
      out[1] = held;
      return int_value(env, 1);
    }
    if (r == SENSE) {
      out[0] = t.sense_lun;
      out[1] = (int32_t)(uint32_t)t.sense_lba;
      out[2] = (int32_t)(uint32_t)(t.sense_lba >> 32);
      return int_value(env, 2);
    }
  }
}

static napi_value js_release(napi_env env, napi_callback_info info) {
  (void)info;
  unmap_window();
  pthread_mutex_lock(&in_lock);
  for (int i = 0; i < IN_SLOTS; i++)
    if (in_shared[i].cb == piece_cb) in_shared[i].ctl = NULL, in_shared[i].cb = NULL, in_shared[i].count = 0;
  pthread_mutex_unlock(&in_lock);
  if (t.aio != 0) syscall(SYS_io_destroy, t.aio);
  t.aio = 0;
  return int_value(env, 0);
}

static napi_value js_cancel_in(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1, words;
  int32_t *ctl;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 1 ||
      !array_arg(env, argv[0], napi_int32_array, (void **)&ctl, &words))
    return int_value(env, -EINVAL);
  int n = 0;
  pthread_mutex_lock(&in_lock);
  for (int i = 0; i < IN_SLOTS; i++) {
    if (in_shared[i].ctl != ctl) continue;
    struct io_event gone;
    for (int k = 0; k < in_shared[i].count; k++)
      if (syscall(SYS_io_cancel, in_shared[i].aio, &in_shared[i].cb[k], &gone) == 0 || errno == EINPROGRESS) n++;
  }
  pthread_mutex_unlock(&in_lock);
  return int_value(env, n);
}

static void put(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value f;
  if (napi_create_function(env, name, (size_t)-1, cb, NULL, &f) == 0) napi_set_named_property(env, exports, name, f);
}

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  put(env, exports, "serve", js_serve);
  put(env, exports, "release", js_release);
  put(env, exports, "cancelIn", js_cancel_in);
  return exports;
}
