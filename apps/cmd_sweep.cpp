// kick sweep: runs an experiment (data/experiments/*.yaml) as child processes of this same binary: one
// `kick compress` per compression setting (cached by content key) and one `kick evaluate` per (model, task),
// up to -j at a time. Every output is atomic or resumable, so a rerun after a crash or kill -9 finishes
// only what is missing. kick report: the paper-style Markdown tables and HTML page of a sweep folder.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <thread>

#include "common.hpp"
#include "kick/io.hpp"
#include "kick/pipeline.hpp"

namespace kick::app {
namespace {

struct Job {
  std::string name;                  // "compress wanda 50%", "evaluate wanda 50% / mmlu (llm-kick)"
  std::vector<std::string> args;     // after the program name
  std::filesystem::path log;
  int depends_on = -1;               // index of a job that must succeed first
  std::function<void()> on_success;  // marks the result done (written atomically)
  pid_t pid = 0;
  double started = 0;
  enum { kWaiting, kRunning, kDone, kFailed, kSkipped } state = kWaiting;
};

std::string self_exe() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) fail("kick sweep: cannot find its own executable (/proc/self/exe: {})", ec.message());
  return path.string();
}

pid_t spawn(const std::string& exe, const std::vector<std::string>& args, const std::filesystem::path& log) {
  std::filesystem::create_directories(log.parent_path());
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) fail("{}: cannot open the job log", log.string());
  const pid_t pid = ::fork();
  if (pid < 0) fail("kick sweep: fork failed");
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(exe.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    std::fprintf(stderr, "kick sweep: exec %s failed\n", exe.c_str());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

// Memory a job needs, estimated from the model file: weights in fp32 plus a margin for activations.
uint64_t job_bytes_estimate(const std::string& model_path) {
  uint64_t bytes = 0;
  std::error_code ec;
  if (std::filesystem::is_directory(model_path, ec)) {
    for (const auto& e : std::filesystem::directory_iterator(model_path)) {
      if (e.path().extension() == ".safetensors" || e.path().extension() == ".bin") bytes += e.file_size();
    }
    bytes *= 2;  // fp16/bf16 on disk -> fp32 in memory (fp32 files overestimate, which errs safe)
  } else {
    bytes = std::filesystem::file_size(model_path, ec);
    if (model_path.size() > 5 && model_path.substr(model_path.size() - 5) == ".gguf") bytes *= 7;  // ~4.5 bits -> fp32
  }
  return bytes * 2 + (uint64_t{1} << 30);  // model + compressed copy or eval buffers, plus 1 GiB
}

void register_sweep_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("sweep", "run an experiment: compress every setting once, evaluate every (model, task); resumable");
  struct Args {
    std::string experiment, out;
    int jobs = 1;
    int threads = 0;
    bool dry_run = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("experiment", args->experiment, "experiment file (data/experiments/*.yaml)")->required();
  cmd->add_option("-o,--out", args->out, "results folder (default: results/sweeps/<name>); rerun to resume");
  cmd->add_option("-j,--jobs", args->jobs, "jobs at a time (reduced to fit the available memory)")->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "threads per job (0: cores / jobs)")->capture_default_str();
  cmd->add_flag("--dry-run", args->dry_run, "print the commands of the jobs that would run, and exit");
  cmd->callback([args] {
    pipeline::Experiment experiment = pipeline::load_experiment(args->experiment);
    if (args->jobs < 1) fail("--jobs: expected >= 1, got {}", args->jobs);
    const std::string model_path = resolve_model_path(experiment.model);
    std::fprintf(stderr, "kick sweep: hashing %s\n", model_path.c_str());
    pipeline::assign_keys(experiment, content_hash(model_path));
    const std::filesystem::path out = args->out.empty() ? std::filesystem::path("results/sweeps") / experiment.name : std::filesystem::path(args->out);
    std::filesystem::create_directories(out / "models");
    // One sweep per folder at a time: a second would race on the same cells.
    const int lock_fd = ::open((out / ".sweep.lock").c_str(), O_RDWR | O_CREAT, 0644);
    if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) fail("{}: another kick sweep is running on this folder", out.string());
    // Half-written compressed models of a killed run (save_compressed_model's DIR.tmp-<pid>) are removed.
    for (const auto& e : std::filesystem::directory_iterator(out / "models")) {
      if (e.path().filename().string().find(".tmp-") != std::string::npos) std::filesystem::remove_all(e.path());
    }
    write_file_atomically(out / "sweep.json", pipeline::sweep_manifest(experiment).dump(2) + "\n");

    int jobs = args->jobs;
    const uint64_t per_job = job_bytes_estimate(model_path), available = available_memory_bytes();
    if (available > 0 && per_job * static_cast<uint64_t>(jobs) > available) {
      const int fit = static_cast<int>(std::max<uint64_t>(1, available / per_job));
      std::fprintf(stderr, "kick sweep: -j %d needs ~%.1f GiB, %.1f GiB available: running %d at a time\n", jobs,
                   double(per_job * jobs) / (1 << 30), double(available) / (1 << 30), fit);
      jobs = fit;
    }
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int threads = args->threads > 0 ? args->threads : std::max(1, cores / jobs);

    std::vector<Job> queue;
    std::string seeds;
    for (auto s : experiment.seeds) seeds += (seeds.empty() ? "" : ",") + std::to_string(s);
    for (const auto& v : experiment.variants) {
      int compress_job = -1;
      std::string model = model_path;
      if (v.method != "dense") {
        const auto dir = pipeline::variant_model_dir(out, v);
        model = dir.string();
        if (!std::filesystem::exists(dir / "compression.json")) {
          Job job;
          job.name = "compress " + v.label;
          job.args = {"compress", "-m", model_path, "-t", std::to_string(threads), "--device", experiment.device,
                      "--dtype", experiment.dtype, "-o", dir.string(), "--overwrite"};
          job.args.insert(job.args.end(), v.compress_args.begin(), v.compress_args.end());
          job.log = out / "logs" / (v.key + ".compress.log");
          compress_job = static_cast<int>(queue.size());
          queue.push_back(job);
        }
      }
      for (const auto& t : experiment.tasks) {
        const auto cell_dir = pipeline::variant_eval_dir(out, v) / (t.task + "." + t.protocol);
        const nlohmann::json marker = {{"variant", v.to_json()}, {"task", t.to_json()}, {"seeds", experiment.seeds}};
        const auto marker_path = cell_dir / "sweep_cell.json";
        if (std::filesystem::exists(marker_path) && std::filesystem::exists(cell_dir / "summary.json")) {
          try {
            if (nlohmann::json::parse(read_file(marker_path)) == marker) continue;  // done with these settings
          } catch (const nlohmann::json::exception&) {
          }
        }
        Job job;
        job.name = fmt::format("evaluate {} / {} ({})", v.label, t.task, t.protocol);
        job.args = {"evaluate", "-m", model, "-t", std::to_string(threads), "--device", experiment.device, "--dtype",
                    experiment.dtype, "--task", t.task, "--protocol", t.protocol,
                    "--limit", std::to_string(t.limit), "--batch-size", std::to_string(t.batch_size), "--seeds", seeds,
                    "-o", pipeline::variant_eval_dir(out, v).string()};
        job.log = out / "logs" / fmt::format("{}.{}.{}.log", v.key, t.task, t.protocol);
        job.depends_on = compress_job;
        job.on_success = [marker, marker_path] { write_file_atomically(marker_path, marker.dump(2) + "\n"); };
        queue.push_back(job);
      }
    }
    std::fprintf(stderr, "kick sweep: %s: %zu models x %zu tasks, %zu jobs to run (%d at a time, %d threads each) -> %s\n",
                 experiment.name.c_str(), experiment.variants.size(), experiment.tasks.size(), queue.size(), jobs, threads,
                 out.c_str());
    if (args->dry_run) {
      for (const auto& j : queue) {
        std::string line = "kick";
        for (const auto& a : j.args) line += " " + a;
        std::printf("%s%s\n", line.c_str(), j.depends_on >= 0 ? "   # after its compress job" : "");
      }
      return;
    }
    const std::string exe = self_exe();
    const double start = monotonic_seconds();
    size_t finished = 0, failed = 0, running = 0;
    while (finished < queue.size()) {
      for (auto& job : queue) {
        if (running >= static_cast<size_t>(jobs)) break;
        if (job.state != Job::kWaiting) continue;
        if (job.depends_on >= 0) {
          const auto dep = queue[static_cast<size_t>(job.depends_on)].state;
          if (dep == Job::kFailed || dep == Job::kSkipped) {
            job.state = Job::kSkipped;
            ++finished;
            std::fprintf(stderr, "kick sweep: skipped %s (its model failed)\n", job.name.c_str());
            continue;
          }
          if (dep != Job::kDone) continue;
        }
        job.pid = spawn(exe, job.args, job.log);
        job.started = monotonic_seconds();
        job.state = Job::kRunning;
        ++running;
        std::fprintf(stderr, "kick sweep: started %s (log %s)\n", job.name.c_str(), job.log.c_str());
      }
      if (running == 0) continue;  // every remaining job was skipped, or more can start now
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, 0);
      if (pid < 0) fail("kick sweep: waitpid failed with {} jobs running", running);
      for (auto& job : queue) {
        if (job.state != Job::kRunning || job.pid != pid) continue;
        --running;
        ++finished;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        job.state = ok ? Job::kDone : Job::kFailed;
        if (ok && job.on_success) job.on_success();
        failed += ok ? 0 : 1;
        const double elapsed = monotonic_seconds() - start;
        std::fprintf(stderr, "kick sweep: [%zu/%zu] %s %s in %s; elapsed %s, ETA %s\n", finished, queue.size(),
                     ok ? "done" : "FAILED", job.name.c_str(), format_duration(monotonic_seconds() - job.started).c_str(),
                     format_duration(elapsed).c_str(),
                     format_duration(elapsed / double(finished) * double(queue.size() - finished)).c_str());
        if (!ok) std::fprintf(stderr, "kick sweep: see %s\n", job.log.c_str());
      }
    }
    std::printf("sweep %s: %zu jobs, %zu failed; results in %s (kick report %s)\n", experiment.name.c_str(), queue.size(), failed,
                out.c_str(), out.c_str());
    if (failed > 0) fail("{} of {} jobs failed (their logs are under {})", failed, queue.size(), (out / "logs").string());
  });
}

void register_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("report", "paper-style tables (Markdown) and charts (self-contained HTML) of a sweep folder");
  struct Args {
    std::string dir, markdown, html;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("dir", args->dir, "a kick sweep results folder")->required();
  cmd->add_option("--markdown", args->markdown, "Markdown output (default: DIR/report.md)");
  cmd->add_option("--html", args->html, "HTML output (default: DIR/report.html)");
  cmd->callback([args] {
    const auto data = pipeline::collect_report(args->dir);
    const std::filesystem::path dir = args->dir;
    const auto md_path = args->markdown.empty() ? dir / "report.md" : std::filesystem::path(args->markdown);
    const auto html_path = args->html.empty() ? dir / "report.html" : std::filesystem::path(args->html);
    const std::string md = pipeline::report_markdown(data);
    write_file_atomically(md_path, md);
    write_file_atomically(html_path, pipeline::report_html(data));
    size_t present = 0;
    for (const auto& c : data.cells) present += c.present ? 1 : 0;
    std::printf("%s", md.c_str());
    std::fprintf(stderr, "kick report: %zu of %zu cells have results; wrote %s and %s\n", present, data.cells.size(),
                 md_path.c_str(), html_path.c_str());
  });
}

}  // namespace

void register_sweep(CLI::App& app) {
  register_sweep_command(app);
  register_report_command(app);
}

}  // namespace kick::app
