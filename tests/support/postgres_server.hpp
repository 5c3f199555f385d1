// A real PostgreSQL server for tests: initialised in a temporary directory, listening on
// 127.0.0.1 only, on a free port, with fsync off (the data is thrown away).
//
//   ee_test::PostgresServer server(EE_INITDB);
//   const std::string dsn = server.dsn(server.create_database());
//   server.stop();   // a server that went away...
//   server.start();  // ...and came back: same data, same port
//
// PostgreSQL refuses to run as root: as root, the directory is handed to the `postgres`
// user (the Debian package creates it) and the server runs as that user.
#pragma once

#include <libpq-fe.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "free_port.hpp"
#include "pg_query.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"
#include "wait_until.hpp"

namespace ee_test {

class PostgresServer {
 public:
  // `initdb`: its path (postgres is taken from the same folder). Throws when the server
  // cannot be initialised or does not accept connections within 60 s.
  explicit PostgresServer(const std::string& initdb)
      : bin_(std::filesystem::path(initdb).parent_path()),
        dir_("ee_postgres"),
        data_(dir_ / "data"),
        port_(free_tcp_port()) {
    hand_to_postgres_user(dir_.path());
    const auto init =
        run_and_capture(as_server_user({initdb, "-D", data_.string(), "-A", "trust", "-U",
                                        "postgres", "--no-sync", "-E", "UTF8", "--locale=C"}),
                        {}, std::chrono::seconds(120));
    if (init.exit_code != 0) {
      throw std::runtime_error("PostgresServer: initdb failed (" + std::to_string(init.exit_code) +
                               "):\n" + init.out + init.err);
    }
    start();
  }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;
  ~PostgresServer() { stop(); }

  int port() const { return port_; }

  // A libpq connection string for `database` on this server.
  std::string dsn(const std::string& database = "postgres") const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + database +
           " connect_timeout=5";
  }

  // Creates an empty database and returns its name.
  std::string create_database() {
    std::string name = "test_" + std::to_string(++databases_);
    pg_query(dsn(), "CREATE DATABASE " + name);
    return name;
  }

  bool running() const { return server_ && server_->running(); }

  // Starts the server (nothing when it runs) and waits until it accepts connections.
  void start() {
    if (running()) return;
    server_ = std::make_unique<Subprocess>(as_server_user(
        {(bin_ / "postgres").string(), "-D", data_.string(), "-k", dir_.str(), "-h", "127.0.0.1",
         "-p", std::to_string(port_), "-F", "-c", "max_connections=50"}));
    const std::string probe = dsn();
    const bool up =
        wait_until([&] { return !server_->running() || PQping(probe.c_str()) == PQPING_OK; },
                   std::chrono::seconds(60), std::chrono::milliseconds(20));
    if (!up || !server_->running()) {
      const std::string log = server_->stderr_text();
      server_.reset();
      throw std::runtime_error("PostgresServer: postgres did not start:\n" + log);
    }
  }

  // A fast shutdown: open sessions are cut, as when a database goes away under a client.
  void stop() {
    if (!server_) return;
    server_->send_signal(SIGINT);
    if (!server_->wait_for_exit(std::chrono::seconds(30))) server_->terminate();
    server_.reset();
  }

 private:
  static bool is_root() { return ::getuid() == 0; }

  std::vector<std::string> as_server_user(std::vector<std::string> argv) const {
    if (!is_root()) return argv;
    std::vector<std::string> wrapped = {"setpriv", "--reuid=postgres", "--regid=postgres",
                                        "--init-groups", "--"};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
  }

  static void hand_to_postgres_user(const std::filesystem::path& dir) {
    if (!is_root()) return;
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) {
      throw std::runtime_error(
          "PostgresServer: running as root, and there is no `postgres` user to run the server "
          "as (install the postgresql package: scripts/install-deps.sh)");
    }
    if (::chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      throw std::runtime_error("PostgresServer: cannot chown " + dir.string());
    }
  }

  std::filesystem::path bin_;
  TempDir dir_;
  std::filesystem::path data_;
  int port_;
  std::atomic<int> databases_{0};
  std::unique_ptr<Subprocess> server_;
};

}  // namespace ee_test
