// kick sweep: runs an experiment (data/experiments/*.yaml) as child processes of this same binary: one
// `kick compress` per compression setting (cached by content key) and one `kick evaluate` per (model, task),
// up to -j at a time. Every output is atomic or resumable, so a rerun after a crash or kill -9 finishes
// only what is missing. `--slurm` writes the same jobs as Slurm job arrays (compress, then evaluate, then a
// report step) run by `kick slurm-task`. kick report: the paper-style Markdown tables and HTML page of a sweep.
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
  std::string needs_model;           // evaluations of compressed models: the folder that must be complete
  nlohmann::json marker;             // written to marker_path (atomically) when the job succeeds
  std::filesystem::path marker_path;
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

void mark_done(const Job& job) {
  if (!job.marker_path.empty()) write_file_atomically(job.marker_path, job.marker.dump(2) + "\n");
}

bool cell_is_done(const std::filesystem::path& marker_path, const std::filesystem::path& summary_path, const nlohmann::json& marker) {
  if (!std::filesystem::exists(marker_path) || !std::filesystem::exists(summary_path)) return false;
  try {
    return nlohmann::json::parse(read_file(marker_path)) == marker;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

// The jobs still missing from `out`: one compress per model without compression.json, one evaluate per
// (variant, task) cell whose sweep_cell.json does not match the current settings.
std::vector<Job> plan_jobs(const pipeline::Experiment& experiment, const std::string& model_path, const std::filesystem::path& out,
                           int threads) {
  std::vector<Job> queue;
  std::string seeds;
  for (auto s : experiment.seeds) seeds += (seeds.empty() ? "" : ",") + std::to_string(s);
  for (const auto& v : experiment.variants) {
    int compress_job = -1;
    std::string model = model_path, needs_model;
    if (v.method != "dense") {
      const auto dir = pipeline::variant_model_dir(out, v);
      model = needs_model = dir.string();
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
      const auto summary_path = pipeline::cell_summary_path(out, v, t);
      Job job;
      job.marker = {{"variant", v.to_json()}, {"task", t.to_json()}, {"seeds", experiment.seeds}};
      job.marker_path = summary_path.parent_path() / "sweep_cell.json";
      if (cell_is_done(job.marker_path, summary_path, job.marker)) continue;  // done with these settings
      job.name = fmt::format("evaluate {} / {} ({})", v.label, t.task, t.protocol);
      job.args = {"evaluate", "-m", model, "-t", std::to_string(threads), "--device", experiment.device, "--dtype",
                  experiment.dtype, "--task", t.task, "--protocol", t.protocol,
                  "--limit", std::to_string(t.limit), "--batch-size", std::to_string(t.batch_size), "--seeds", seeds,
                  "-o", pipeline::variant_eval_dir(out, v).string()};
      job.log = out / "logs" / fmt::format("{}.{}.{}.log", v.key, t.task, t.protocol);
      job.depends_on = compress_job;
      job.needs_model = needs_model;
      queue.push_back(job);
    }
  }
  return queue;
}

// Runs the queue as child processes, `jobs` at a time; an evaluation waits for its model's compression.
void run_jobs_locally(std::vector<Job>& queue, int jobs) {
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
      if (ok) mark_done(job);
      failed += ok ? 0 : 1;
      const double elapsed = monotonic_seconds() - start;
      std::fprintf(stderr, "kick sweep: [%zu/%zu] %s %s in %s; elapsed %s, ETA %s\n", finished, queue.size(),
                   ok ? "done" : "FAILED", job.name.c_str(), format_duration(monotonic_seconds() - job.started).c_str(),
                   format_duration(elapsed).c_str(),
                   format_duration(elapsed / double(finished) * double(queue.size() - finished)).c_str());
      if (!ok) std::fprintf(stderr, "kick sweep: see %s\n", job.log.c_str());
    }
  }
  if (failed > 0) fail("{} of {} jobs failed (their logs are under {})", failed, queue.size(), queue.front().log.parent_path().string());
}

// ------------------------------------------------------------------------------------------------ Slurm

struct SlurmOptions {
  std::vector<std::string> sbatch_options;  // each becomes one "#SBATCH <option>" line (partition, gres, time ...)
  std::string sbatch = "sbatch";
  bool submit = true;
};

std::string shell_quote(const std::string& s) {
  std::string quoted = "'";
  for (char c : s) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs a command line, returning its stdout; a non-zero exit is an error carrying what it printed.
std::string run_capturing(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) fail("cannot run: {}", command);
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  const int status = ::pclose(pipe);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  if (status != 0) fail("{} failed: {}", command, output.empty() ? "no output" : output);
  return output;
}

nlohmann::json job_to_json(const Job& job) {
  return {{"name", job.name}, {"args", job.args}, {"log", job.log.string()}, {"needs_model", job.needs_model},
          {"marker", job.marker}, {"marker_path", job.marker_path.string()}};
}

// A job of a plan file written by job_to_json; `where` names the file and the job for errors (a hand-edited
// or truncated plan gets the missing or mistyped field by name).
Job job_from_json(const nlohmann::json& j, const std::string& where) {
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(key)) fail("{}: missing field '{}'", where, key);
    return j.at(key);
  };
  Job job;
  try {
    job.name = field("name").get<std::string>();
    job.args = field("args").get<std::vector<std::string>>();
    job.log = field("log").get<std::string>();
    job.needs_model = field("needs_model").get<std::string>();
    job.marker = field("marker");
    job.marker_path = field("marker_path").get<std::string>();
  } catch (const nlohmann::json::type_error& e) {
    fail("{}: a field has the wrong type ({})", where, e.what());
  }
  return job;
}

// Writes DIR/slurm/<stamp>/{plan.json, compress.sbatch, evaluate.sbatch, report.sbatch} and submits them as
// a compress array, an evaluate array after it (afterany: a cell whose model failed fails alone, naming the
// compress log), and one `kick report` step after that, which merges the cells into report.md/.html.
void submit_to_slurm(const std::vector<Job>& queue, const std::filesystem::path& out, const pipeline::Experiment& experiment,
                     int threads, uint64_t job_bytes, const SlurmOptions& options) {
  const auto dir = out / "slurm" / fmt::format("{}-{}", static_cast<long long>(::time(nullptr)), ::getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::create_directories(out / "logs");  // Slurm fails a job whose --output folder is missing
  nlohmann::json plan = {{"experiment", experiment.name}, {"compress", nlohmann::json::array()}, {"evaluate", nlohmann::json::array()}};
  for (const auto& job : queue) plan[job.args.front() == "compress" ? "compress" : "evaluate"].push_back(job_to_json(job));
  write_file_atomically(dir / "plan.json", plan.dump(2) + "\n");

  const std::string exe = self_exe();
  const auto write_script = [&](const std::string& stage, size_t tasks, const std::string& command) {
    std::string text = "#!/bin/bash\n# kick sweep " + experiment.name + ": " + stage + " (written by kick " + version_string() + ")\n";
    text += fmt::format("#SBATCH --job-name=kick-{}-{}\n", experiment.name, stage);
    if (tasks > 0) text += fmt::format("#SBATCH --array=0-{}\n", tasks - 1);
    text += fmt::format("#SBATCH --cpus-per-task={}\n#SBATCH --mem={}M\n", stage == "report" ? 1 : threads,
                        stage == "report" ? 1024 : job_bytes >> 20);
    text += "#SBATCH --output=" + (out / "logs" / (tasks > 0 ? "slurm-%A_%a.out" : "slurm-%j.out")).string() + "\n";
    for (const auto& o : options.sbatch_options) text += "#SBATCH " + o + "\n";
    text += "exec " + command + "\n";
    const auto path = dir / (stage + ".sbatch");
    write_file_atomically(path, text);
    std::filesystem::permissions(path, std::filesystem::perms::owner_exec, std::filesystem::perm_options::add);
    return path;
  };
  const auto task_command = [&](const std::string& stage) {
    return shell_quote(exe) + " slurm-task " + shell_quote((dir / "plan.json").string()) + " " + stage + " \"$SLURM_ARRAY_TASK_ID\"";
  };
  std::vector<std::pair<std::string, std::filesystem::path>> scripts;
  if (!plan["compress"].empty()) scripts.emplace_back("compress", write_script("compress", plan["compress"].size(), task_command("compress")));
  if (!plan["evaluate"].empty()) scripts.emplace_back("evaluate", write_script("evaluate", plan["evaluate"].size(), task_command("evaluate")));
  scripts.emplace_back("report", write_script("report", 0, shell_quote(exe) + " report " + shell_quote(out.string())));

  std::string previous;
  for (const auto& [stage, script] : scripts) {
    const std::string command = shell_quote(options.sbatch) + " --parsable" +
                                (previous.empty() ? "" : " --dependency=afterany:" + previous) + " " + shell_quote(script.string());
    if (!options.submit) {
      std::printf("%s\n", command.c_str());
      previous = "$" + stage + "_job";  // placeholder in the printed commands
      continue;
    }
    std::string id = run_capturing(command);
    id = id.substr(0, id.find(';'));  // "<id>;<cluster>" on multi-cluster setups
    std::fprintf(stderr, "kick sweep: submitted %s as Slurm job %s\n", stage.c_str(), id.c_str());
    std::printf("%s %s\n", stage.c_str(), id.c_str());
    previous = id;
  }
  std::fprintf(stderr, "kick sweep: %zu compressions, %zu evaluations and the report step %s (%s); logs under %s\n",
               plan["compress"].size(), plan["evaluate"].size(), options.submit ? "submitted" : "written, not submitted",
               dir.c_str(), (out / "logs").c_str());
}

void register_sweep_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("sweep", "run an experiment: compress every setting once, evaluate every (model, task); resumable");
  struct Args {
    std::string experiment, out;
    int jobs = 1;
    int threads = 0;
    bool dry_run = false, slurm = false;
    SlurmOptions slurm_options;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("experiment", args->experiment, "experiment file (data/experiments/*.yaml)")->required();
  cmd->add_option("-o,--out", args->out, "results folder (default: results/sweeps/<name>); rerun to resume");
  cmd->add_option("-j,--jobs", args->jobs, "jobs at a time (reduced to fit the available memory)")->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "threads per job (0: cores / jobs; with --slurm: this machine's cores)")->capture_default_str();
  cmd->add_flag("--dry-run", args->dry_run, "print the commands of the jobs that would run, and exit");
  cmd->add_flag("--slurm", args->slurm, "submit the missing jobs as Slurm job arrays (compress, evaluate, then a report step)");
  cmd->add_option("--sbatch-option", args->slurm_options.sbatch_options,
                  "with --slurm: one more #SBATCH line for every job, e.g. --sbatch-option=--partition=gpu --sbatch-option=--gres=gpu:1");
  cmd->add_option("--sbatch", args->slurm_options.sbatch, "with --slurm: the sbatch program")->capture_default_str();
  cmd->add_flag("!--no-submit", args->slurm_options.submit, "with --slurm: write the job scripts and print the sbatch commands, submit nothing");
  cmd->callback([args] {
    pipeline::Experiment experiment = pipeline::load_experiment(args->experiment);
    if (args->jobs < 1) fail("--jobs: expected >= 1, got {}", args->jobs);
    if (args->slurm && args->dry_run) fail("--slurm and --dry-run: choose one (--slurm --no-submit writes the job scripts only)");
    if (!args->slurm && (!args->slurm_options.sbatch_options.empty() || !args->slurm_options.submit)) {
      fail("--sbatch-option and --no-submit only apply with --slurm");
    }
    std::string model_path = resolve_model_path(experiment.model);
    std::filesystem::path out = args->out.empty() ? std::filesystem::path("results/sweeps") / experiment.name : std::filesystem::path(args->out);
    if (args->slurm) {  // array tasks run elsewhere, from another working directory
      model_path = std::filesystem::absolute(model_path).lexically_normal().string();
      out = std::filesystem::absolute(out).lexically_normal();
    }
    std::fprintf(stderr, "kick sweep: hashing %s\n", model_path.c_str());
    pipeline::assign_keys(experiment, content_hash(model_path));
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
    if (!args->slurm && available > 0 && per_job * static_cast<uint64_t>(jobs) > available) {
      const int fit = static_cast<int>(std::max<uint64_t>(1, available / per_job));
      std::fprintf(stderr, "kick sweep: -j %d needs ~%.1f GiB, %.1f GiB available: running %d at a time\n", jobs,
                   double(per_job * jobs) / (1 << 30), double(available) / (1 << 30), fit);
      jobs = fit;
    }
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int threads = args->threads > 0 ? args->threads : args->slurm ? cores : std::max(1, cores / jobs);

    std::vector<Job> queue = plan_jobs(experiment, model_path, out, threads);
    std::fprintf(stderr, "kick sweep: %s: %zu models x %zu tasks, %zu jobs to run (%s, %d threads each) -> %s\n",
                 experiment.name.c_str(), experiment.variants.size(), experiment.tasks.size(), queue.size(),
                 args->slurm ? "Slurm" : fmt::format("{} at a time", jobs).c_str(), threads, out.c_str());
    if (args->dry_run) {
      for (const auto& j : queue) {
        std::string line = "kick";
        for (const auto& a : j.args) line += " " + a;
        std::printf("%s%s\n", line.c_str(), j.depends_on >= 0 ? "   # after its compress job" : "");
      }
      return;
    }
    if (args->slurm) {
      submit_to_slurm(queue, out, experiment, threads, per_job, args->slurm_options);
      return;
    }
    if (!queue.empty()) run_jobs_locally(queue, jobs);
    std::printf("sweep %s: %zu jobs; results in %s (kick report %s)\n", experiment.name.c_str(), queue.size(), out.c_str(), out.c_str());
  });
}

// One task of a --slurm array: the plan's job for this stage and index, run as a child process; the cell
// marker is written when it succeeds, so a resubmitted sweep skips it like a local rerun would.
void register_slurm_task_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("slurm-task", "run one job of a `kick sweep --slurm` plan (what the Slurm array tasks call)");
  cmd->group("");  // internal: not listed in kick --help
  struct Args {
    std::string plan, stage;
    int64_t index = -1;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("plan", args->plan, "plan.json written by kick sweep --slurm")->required();
  cmd->add_option("stage", args->stage, "compress or evaluate")->required()->check(CLI::IsMember({"compress", "evaluate"}));
  cmd->add_option("index", args->index, "array task index ($SLURM_ARRAY_TASK_ID)")->required();
  cmd->callback([args] {
    nlohmann::json plan;
    try {
      plan = nlohmann::json::parse(read_file(args->plan));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not a kick sweep plan ({})", args->plan, e.what());
    }
    if (!plan.is_object() || !plan.contains(args->stage) || !plan.at(args->stage).is_array()) {
      fail("{}: no '{}' job list in this plan", args->plan, args->stage);
    }
    const auto& stage = plan.at(args->stage);
    if (args->index < 0 || args->index >= static_cast<int64_t>(stage.size())) {
      fail("{}: {} index {} is outside 0..{}", args->plan, args->stage, args->index, static_cast<int64_t>(stage.size()) - 1);
    }
    const Job job = job_from_json(stage.at(static_cast<size_t>(args->index)),
                                  fmt::format("{}: {} job {}", args->plan, args->stage, args->index));
    // plan_jobs puts the marker beside the cell's summary.json.
    if (!job.marker_path.empty() && cell_is_done(job.marker_path, job.marker_path.parent_path() / "summary.json", job.marker)) {
      std::fprintf(stderr, "kick slurm-task: %s is already done\n", job.name.c_str());
      return;
    }
    if (!job.needs_model.empty() && !std::filesystem::exists(std::filesystem::path(job.needs_model) / "compression.json")) {
      fail("{}: its model {} was not made (see that model's compress log under {})", job.name, job.needs_model,
           job.log.parent_path().string());
    }
    std::fprintf(stderr, "kick slurm-task: %s (log %s)\n", job.name.c_str(), job.log.c_str());
    const double start = monotonic_seconds();
    const pid_t pid = spawn(self_exe(), job.args, job.log);
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) fail("kick slurm-task: waitpid failed for {}", job.name);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fail("{} failed ({}); see {}", job.name,
           WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status)) : fmt::format("signal {}", WTERMSIG(status)), job.log.string());
    }
    mark_done(job);
    std::fprintf(stderr, "kick slurm-task: done %s in %s\n", job.name.c_str(), format_duration(monotonic_seconds() - start).c_str());
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
  register_slurm_task_command(app);
  register_report_command(app);
}

}  // namespace kick::app
