/*
 * shared_mutex_hold: C++ standard library locks held across slow work.
 *
 * std::shared_mutex (a pthread_rwlock_t in libstdc++): thread "cache-writer" holds cache_lock
 * exclusively ~300ms every ~700ms in rebuild_cache(); "cache-reader-1".."3" read the cache every
 * few milliseconds in read_cache() with a std::shared_lock and wait meanwhile.
 * std::mutex (a pthread_mutex_t): thread "stats-flusher" holds stats_lock ~300ms every ~700ms in
 * rebuild_stats(); "stats-counter-1".."2" count events in bump_stats() and wait meanwhile.
 *
 * usage: shared_mutex_hold [SECONDS]   (default 5; prints "ROLE tid=N" lines on stderr, exits 0)
 */
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

namespace {

std::shared_mutex cache_lock;
std::map<int, long> cache;
std::mutex stats_lock;
long stats[16];
std::mutex print_lock;

void announce(const std::string &name)
{
	pthread_setname_np(pthread_self(), name.c_str());
	std::lock_guard<std::mutex> g(print_lock);
	std::fprintf(stderr, "%s tid=%d\n", name.c_str(), gettid());
}

} // namespace

__attribute__((noinline)) void rebuild_cache()
{
	std::unique_lock<std::shared_mutex> guard(cache_lock);
	std::this_thread::sleep_for(std::chrono::milliseconds(300)); // stands for reloading
	for (int k = 0; k < 64; k++)
		cache[k]++;
}

__attribute__((noinline)) long read_cache(int key)
{
	std::shared_lock<std::shared_mutex> guard(cache_lock);
	auto it = cache.find(key & 63);
	return it == cache.end() ? 0 : it->second;
}

__attribute__((noinline)) void rebuild_stats()
{
	std::lock_guard<std::mutex> guard(stats_lock);
	std::this_thread::sleep_for(std::chrono::milliseconds(300));
	for (long &s : stats)
		s = 0;
}

__attribute__((noinline)) void bump_stats(int key)
{
	std::lock_guard<std::mutex> guard(stats_lock);
	stats[key & 15]++;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? std::atoi(argv[1]) : 5;

	for (int i = 1; i <= 3; i++)
		std::thread([i] {
			announce("cache-reader-" + std::to_string(i));
			long sum = 0;
			for (int k = 0;; k++) {
				sum += read_cache(k);
				std::this_thread::sleep_for(std::chrono::milliseconds(5));
			}
		}).detach();
	for (int i = 1; i <= 2; i++)
		std::thread([i] {
			announce("stats-counter-" + std::to_string(i));
			for (int k = 0;; k++) {
				bump_stats(k);
				std::this_thread::sleep_for(std::chrono::milliseconds(5));
			}
		}).detach();
	std::thread([] {
		announce("cache-writer");
		for (;;) {
			std::this_thread::sleep_for(std::chrono::milliseconds(700));
			rebuild_cache();
		}
	}).detach();
	std::thread([] {
		announce("stats-flusher");
		for (;;) {
			std::this_thread::sleep_for(std::chrono::milliseconds(700));
			rebuild_stats();
		}
	}).detach();
	std::this_thread::sleep_for(std::chrono::seconds(seconds));
	std::_Exit(0);
}
