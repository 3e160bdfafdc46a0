/* A tiny fork-join thread pool for the compiler's kernels (generated fused loops, softmax,
 * layer norm...). Why not OpenMP: an OpenMP runtime is process-wide, and when torch (or anything
 * else) loaded libgomp first, its default spin-wait policy is already fixed -- idle workers then spin
 * for milliseconds after every parallel region and steal the cores OpenBLAS needs (a LeNet step went
 * from 5 to 30 ms). These workers sleep on a condition variable between jobs (passive waiting).
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

typedef void (*task_fn)(void **argv, long t0, long t1);

#define MAX_WORKERS 63

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;   /* one job at a time */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static int started = 0;               /* workers created so far */
static long generation = 0;           /* bumped per job: workers run each job once */
static int pending = 0;               /* chunks not finished yet */
static int job_nt = 0;
static task_fn job_fn;
static void **job_argv;
static long job_ntasks;

static void chunk(int k, int nt, long ntasks, long *t0, long *t1) {
    long q = ntasks / nt, r = ntasks % nt;
    *t0 = k * q + (k < r ? k : r);
    *t1 = *t0 + q + (k < r);
}

static __thread int in_task = 0;      /* this thread is running pool tasks right now */

static void *worker(void *arg) {
    int id = (int)(long)arg;          /* 1-based: chunk 0 belongs to the caller */
    in_task = 1;
    long seen = 0;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (generation == seen) pthread_cond_wait(&wake, &mu);
        seen = generation;
        if (id >= job_nt) continue;   /* this job does not need me */
        task_fn fn = job_fn;
        void **argv = job_argv;
        long t0, t1;
        chunk(id, job_nt, job_ntasks, &t0, &t1);
        pthread_mutex_unlock(&mu);
        if (t1 > t0) fn(argv, t0, t1);
        pthread_mutex_lock(&mu);
        if (--pending == 0) pthread_cond_signal(&done);
    }
    return 0;
}

/* a forked child has none of the parent's workers: start from an empty pool there */
static void reset_in_child(void) {
    pthread_mutex_init(&job_lock, 0);
    pthread_mutex_init(&mu, 0);
    pthread_cond_init(&wake, 0);
    pthread_cond_init(&done, 0);
    started = 0;
    generation = 0;
    pending = 0;
}

__attribute__((constructor)) static void register_fork_handler(void) {
    pthread_atfork(0, 0, reset_in_child);
}

/* run with job_lock held; returns the thread count used (fewer when threads cannot be made) */
static int run_locked(task_fn fn, void **argv, long ntasks, int nt) {
    pthread_mutex_lock(&mu);
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
    job_fn = fn; job_argv = argv; job_ntasks = ntasks; job_nt = nt;
    pending = nt - 1;
    generation++;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&mu);
    long t0, t1;
    chunk(0, nt, ntasks, &t0, &t1);
    int was = in_task;
    in_task = 1;
    if (t1 > t0) fn(argv, t0, t1);
    in_task = was;
    pthread_mutex_lock(&mu);
    while (pending > 0) pthread_cond_wait(&done, &mu);
    pthread_mutex_unlock(&mu);
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
