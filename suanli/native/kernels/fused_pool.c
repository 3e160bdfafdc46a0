/* A tiny fork-join thread pool for the compiler's kernels (generated fused loops, softmax,
 * layer norm...). Why not OpenMP: an OpenMP runtime is process-wide, and when torch (or anything
 * else) loaded libgomp first, its default spin-wait policy is already fixed -- idle workers then spin
 * for milliseconds after every parallel region and steal the cores OpenBLAS needs (a LeNet step went
 * from 5 to 30 ms). These workers spin briefly, then sleep on a condition variable:
 *
 * Waiting. A worker that finished a job spins for SUANLI_POOL_SPIN_US microseconds (default 200)
 * watching its slot for the next job, then sleeps; the caller likewise spins on the pending count
 * before sleeping. Waking a sleeping thread costs a futex call on each side -- measured on the 2-core
 * VM: the worker started 27 us after the job was posted, the caller woke 27 us after the worker
 * finished, ~60 us per job, ~0.1 ms per ResNet-18 layer of 0.5 ms. Back-to-back kernels of a plan
 * (tens of microseconds of Python between them) find the worker still spinning; a process that
 * stops calling loses at most one spin window per worker. 0 restores pure sleeping.
 *
 * Each worker has its own slot (task, range, a 'go' counter): the caller writes only the slots of
 * the workers a job uses, and those are idle, so no worker ever reads a job description that is
 * being rewritten.
 *
 * suanli_parallel(fn, argv, ntasks, nt) runs fn(argv, t0, t1) over [0, ntasks) split into nt
 * contiguous chunks, the calling thread taking the first; it returns when every chunk is done.
 * Results never depend on nt as long as fn writes per-task results (the kernels do). One job at a
 * time: a second caller waits on the job lock.
 *
 * suanli_blas_threads is an OpenBLAS threads callback (openblas_set_threads_callback_function):
 * while a compiled plan runs, OpenBLAS's parallel GEMMs run their jobs on these same workers, so
 * no other thread spins between GEMMs on the core the next kernel needs (OpenBLAS's own workers
 * busy-wait ~0.1 s after every call: our threaded kernels got no second core). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef void (*task_fn)(void **argv, long t0, long t1);

#define MAX_WORKERS 63

typedef struct {
    task_fn fn;
    void **argv;
    long t0, t1;
    atomic_long go;                   /* bumped by the caller per job given to this worker */
    atomic_int sleeping;              /* the worker is (about to be) blocked on cv */
    pthread_cond_t cv;
} __attribute__((aligned(64))) slot_t;  /* slots on their own cache lines: no false sharing of 'go' */

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;   /* one job at a time */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;         /* sleeping and waking */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static slot_t slots[MAX_WORKERS + 1];   /* slot k for worker k (1-based); slot 0 unused */
static int started = 0;               /* workers created so far */
static atomic_int pending;            /* chunks not finished yet */
static atomic_int caller_sleeping;
static long spin_ns = -1;             /* SUANLI_POOL_SPIN_US, read once */

static void chunk(int k, int nt, long ntasks, long *t0, long *t1) {
    long q = ntasks / nt, r = ntasks % nt;
    *t0 = k * q + (k < r ? k : r);
    *t1 = *t0 + q + (k < r);
}

static __thread int in_task = 0;      /* this thread is running pool tasks right now */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* spin up to spin_ns until cond() holds; returns whether it did */
#define SPIN_UNTIL(cond)                                                                      \
    ({                                                                                        \
        int ok_ = 0;                                                                          \
        if (spin_ns > 0) {                                                                    \
            long end_ = now_ns() + spin_ns;                                                   \
            for (int i_ = 0;; i_++) {                                                         \
                if (cond) { ok_ = 1; break; }                                                 \
                cpu_relax();                                                                  \
                if ((i_ & 63) == 63) {                                                        \
                    if (now_ns() > end_) break;                                               \
                    sched_yield();    /* a thread sharing this core (the one we wait for) runs */ \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        ok_;                                                                                  \
    })

static void *worker(void *arg) {
    slot_t *s = &slots[(long)arg];
    in_task = 1;
    long seen = 0;
    for (;;) {
        if (!SPIN_UNTIL(atomic_load_explicit(&s->go, memory_order_acquire) != seen)) {
            pthread_mutex_lock(&mu);
            atomic_store(&s->sleeping, 1);          /* then re-check: the caller checks 'sleeping' after 'go' */
            while (atomic_load(&s->go) == seen) pthread_cond_wait(&s->cv, &mu);
            atomic_store(&s->sleeping, 0);
            pthread_mutex_unlock(&mu);
        }
        seen = atomic_load_explicit(&s->go, memory_order_acquire);
        if (s->t1 > s->t0) s->fn(s->argv, s->t0, s->t1);
        if (atomic_fetch_sub(&pending, 1) == 1 && atomic_load(&caller_sleeping)) {
            pthread_mutex_lock(&mu);
            pthread_cond_signal(&done);
            pthread_mutex_unlock(&mu);
        }
    }
    return 0;
}

/* a forked child has none of the parent's workers: start from an empty pool there */
static void reset_in_child(void) {
    pthread_mutex_init(&job_lock, 0);
    pthread_mutex_init(&mu, 0);
    pthread_cond_init(&done, 0);
    for (int k = 0; k <= MAX_WORKERS; k++) {
        pthread_cond_init(&slots[k].cv, 0);
        atomic_store(&slots[k].go, 0);
        atomic_store(&slots[k].sleeping, 0);
    }
    started = 0;
    atomic_store(&pending, 0);
    atomic_store(&caller_sleeping, 0);
}

__attribute__((constructor)) static void register_fork_handler(void) {
    for (int k = 0; k <= MAX_WORKERS; k++) pthread_cond_init(&slots[k].cv, 0);
    pthread_atfork(0, 0, reset_in_child);
}

/* run with job_lock held; returns the thread count used (fewer when threads cannot be made) */
static int run_locked(task_fn fn, void **argv, long ntasks, int nt) {
    if (spin_ns < 0) {
        const char *env = getenv("SUANLI_POOL_SPIN_US");
        spin_ns = (env ? atol(env) : 200) * 1000L;
        if (spin_ns < 0) spin_ns = 0;
    }
    while (started < nt - 1) {        /* grow the pool lazily */
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&th, &attr, worker, (void *)(long)(started + 1));
        pthread_attr_destroy(&attr);
        if (failed) break;
        started++;
    }
    if (started < nt - 1) nt = started + 1;
    atomic_store(&pending, nt - 1);
    for (int k = 1; k < nt; k++) {    /* post the chunks; wake only the workers that sleep */
        slot_t *s = &slots[k];
        s->fn = fn; s->argv = argv;
        chunk(k, nt, ntasks, &s->t0, &s->t1);
        atomic_fetch_add(&s->go, 1);
        if (atomic_load(&s->sleeping)) {
            pthread_mutex_lock(&mu);
            pthread_cond_signal(&s->cv);
            pthread_mutex_unlock(&mu);
        }
    }
    long t0, t1;
    chunk(0, nt, ntasks, &t0, &t1);
    int was = in_task;
    in_task = 1;
    if (t1 > t0) fn(argv, t0, t1);
    in_task = was;
    if (!SPIN_UNTIL(atomic_load_explicit(&pending, memory_order_acquire) == 0)) {
        pthread_mutex_lock(&mu);
        atomic_store(&caller_sleeping, 1);
        while (atomic_load(&pending) > 0) pthread_cond_wait(&done, &mu);
        atomic_store(&caller_sleeping, 0);
        pthread_mutex_unlock(&mu);
    }
    return nt;
}

int suanli_parallel(task_fn fn, void **argv, long ntasks, int nt) {
    if (nt > ntasks) nt = (int)ntasks;
    if (nt > MAX_WORKERS + 1) nt = MAX_WORKERS + 1;
    if (nt <= 1 || in_task) {         /* nested in a task: run here */
        if (ntasks > 0) fn(argv, 0, ntasks);
        return 1;
    }
    pthread_mutex_lock(&job_lock);
    nt = run_locked(fn, argv, ntasks, nt);
    pthread_mutex_unlock(&job_lock);
    return nt;
}

/* ---------------------------------------------------------------- OpenBLAS threads callback */
typedef void (*dojob_fn)(int, void *, int);

static void blas_jobs(void **a, long t0, long t1) {
    dojob_fn f = (dojob_fn)a[0];
    char *data = (char *)a[1];
    size_t size = (size_t)a[2];
    int arg = (int)(long)a[3];
    for (long t = t0; t < t1; t++) f((int)t, data + t * size, arg);
}

struct one_job { void **argv; long t; };

static void *one_job_thread(void *p) {
    struct one_job *j = (struct one_job *)p;
    blas_jobs(j->argv, j->t, j->t + 1);
    return 0;
}

/* OpenBLAS's jobs synchronize with each other, so all of them must run at once, each on its own
 * thread: on the pool when it is free (one job per thread), else on temporary threads. */
void suanli_blas_threads(int sync, dojob_fn dojob, int numjobs, size_t elsize, void *jobdata, int dojob_data) {
    (void)sync;
    void *argv[4] = {(void *)dojob, jobdata, (void *)elsize, (void *)(long)dojob_data};
    if (numjobs <= 1) {
        blas_jobs(argv, 0, numjobs);
        return;
    }
    if (!in_task && numjobs <= MAX_WORKERS + 1 && pthread_mutex_trylock(&job_lock) == 0) {
        pthread_mutex_lock(&mu);
        int enough = started >= numjobs - 1;
        pthread_mutex_unlock(&mu);
        if (!enough) {                    /* grow first with an empty job: never fewer threads than jobs */
            run_locked(blas_jobs, argv, 0, numjobs);
            pthread_mutex_lock(&mu);
            enough = started >= numjobs - 1;
            pthread_mutex_unlock(&mu);
        }
        if (enough) {
            run_locked(blas_jobs, argv, numjobs, numjobs);
            pthread_mutex_unlock(&job_lock);
            return;
        }
        pthread_mutex_unlock(&job_lock);
    }
    pthread_t th[MAX_WORKERS + 1];
    struct one_job jobs[MAX_WORKERS + 1];
    int made[MAX_WORKERS + 1] = {0};
    int n = numjobs <= MAX_WORKERS + 1 ? numjobs : MAX_WORKERS + 1;
    for (int i = 1; i < n; i++) {
        jobs[i].argv = argv;
        jobs[i].t = i;
        made[i] = pthread_create(&th[i], 0, one_job_thread, &jobs[i]) == 0;
        if (!made[i]) blas_jobs(argv, i, i + 1);     /* last resort */
    }
    blas_jobs(argv, 0, 1);
    for (long i = n; i < numjobs; i++) blas_jobs(argv, i, i + 1);
    for (int i = 1; i < n; i++)
        if (made[i]) pthread_join(th[i], 0);
}
