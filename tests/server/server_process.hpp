#pragma once
// Starts sc2-server on a free loopback port for a test and stops it after:
// the server prints "listening on http://127.0.0.1:PORT" on its first line.

#include <catch2/catch.hpp>
#include <httplib.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace sc2::test {

/// A running sc2-server with the bundled model and `args`.
class ServerProcess {
public:
  explicit ServerProcess(std::vector<std::string> args) {
    std::vector<std::string> all{SC2_SERVER, "--port", "0", "--threads", "2"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    REQUIRE(pipe(out) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    REQUIRE(posix_spawn(&pid_, SC2_SERVER, &actions, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    stdout_ = fdopen(out[0], "r");
    char line[256] = {};
    REQUIRE(std::fgets(line, sizeof line, stdout_) != nullptr);
    const std::string text(line);
    const auto colon = text.rfind(':');
    REQUIRE(colon != std::string::npos);
    port_ = std::stoi(text.substr(colon + 1));
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(); }

  /// Sends SIGTERM and waits; the exit status (0 for a clean stop).
  int stop() {
    if (pid_ <= 0) return status_;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (stdout_) std::fclose(stdout_);
    stdout_ = nullptr;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return status_;
  }
  /// The port it listens on.
  int port() const noexcept { return port_; }
  /// A client of it.
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(std::chrono::seconds(60));
    return c;
  }

private:
  pid_t pid_ = -1;
  FILE* stdout_ = nullptr;
  int port_ = 0;
  int status_ = 0;
};

}  // namespace sc2::test
