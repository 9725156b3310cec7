// lib/eval/runner.cpp: evaluate_task, the loop every task goes through: load the task's data, skip what the
// seed's JSONL log already holds, run the rest in batches (MMLU letters, generation, perplexity), score each
// example with the task's metrics, append the records as each batch finishes, then aggregate over examples
// and seeds into summary.json. Batches are fixed by the data order, not by what is left, and sampling seeds
// are per example, so a resumed run computes exactly what an uninterrupted one would.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "kick/core.hpp"
#include "kick/evaluate.hpp"
#include "kick/judge.hpp"

namespace kick::eval {
namespace {

// One prompt to generate from and what its output is scored against.
struct GenerationItem {
  std::string id;
  std::string prompt;  // as the model sees it (chat template applied)
  std::string question_prompt;  // before the chat template (llm-kick factoid scoring reads it back)
  std::vector<std::string> references;
  nlohmann::json meta = nlohmann::json::object();
  std::vector<std::string> later_turns;  // MT-Bench: user turns after the first, answered in the same chat
};

uint64_t example_seed(uint64_t seed, const std::string& id) {
  return std::stoull(fnv1a64_hex(fmt::format("{}:{}", seed, id)), nullptr, 16);
}

double mean_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

// Sample standard deviation over seeds (0 for one seed), as lm-evaluation-harness reports spreads.
double stdev_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double sum = 0;
  for (double x : v) sum += (x - m) * (x - m);
  return std::sqrt(sum / static_cast<double>(v.size() - 1));
}

std::string chat_template_for(const TaskSpec& spec, const Model& model) {
  std::string name = spec.option("chat_template", "");
  return name.empty() || name == "model" ? default_chat_template(model.vocab()) : name;
}

// The text a metric scores: the generation, its first line, or (LLM-KICK's FreebaseQA) prompt + generation.
std::string scored_text(const TaskSpec& spec, const GenerationItem& item, const std::string& generation) {
  const std::string mode = spec.option("score_text", "generation");
  if (mode == "generation") return generation;
  if (mode == "first_line") return first_line_answer(generation);
  if (mode == "prompt_and_generation") return factoid_output_llmkick(item.question_prompt, generation);
  fail("{}: options.score_text: expected generation, first_line or prompt_and_generation, got \"{}\"", spec.file, mode);
}

SamplingOptions sampling_for(const TaskSpec& spec, const std::string& chat_template) {
  SamplingOptions s;
  s.temperature = spec.decoding.mode == "sample" ? spec.decoding.temperature : 0.0;
  s.top_p = spec.decoding.mode == "sample" ? spec.decoding.top_p : 1.0;
  s.top_k = spec.decoding.mode == "sample" ? spec.decoding.top_k : 0;
  s.max_new_tokens = spec.decoding.max_new_tokens > 0 ? spec.decoding.max_new_tokens : 256;
  s.stop = spec.decoding.stop;
  if (spec.chat) {
    for (auto& stop : chat_template_stops(chat_template)) s.stop.push_back(stop);
  }
  return s;
}

std::vector<GenerationItem> generation_items(const TaskSpec& spec, const Model& model, const TaskData& data,
                                             int64_t limit) {
  std::vector<GenerationItem> items;
  auto take = [&](size_t n) { return limit > 0 ? std::min<size_t>(n, static_cast<size_t>(limit)) : n; };
  if (const auto* qa = std::get_if<std::vector<QaExample>>(&data)) {
    for (size_t i = 0; i < take(qa->size()); ++i) {
      const auto& ex = (*qa)[i];
      items.push_back({ex.id.empty() ? ex.source : ex.id, "", render_qa_prompt(spec, ex), references_for(spec, ex),
                       {{"question", ex.question}, {"answers", ex.answers}}, {}});
    }
  } else if (const auto* stories = std::get_if<std::vector<Story>>(&data)) {
    for (size_t i = 0; i < take(stories->size()); ++i) {
      const auto& story = (*stories)[i];
      std::string prompt = render_summary_prompt(spec, story);
      items.push_back({story.bucket + "/" + story.id, "", prompt, references_for(spec, story),
                       {{"bucket", story.bucket}, {"question", prompt}}, {}});
    }
  } else if (const auto* instructions = std::get_if<std::vector<Instruction>>(&data)) {
    for (size_t i = 0; i < take(instructions->size()); ++i) {
      const auto& ins = (*instructions)[i];
      GenerationItem item{std::to_string(ins.question_id), "", render_instruction_prompt(spec, ins, 0), ins.reference,
                          {{"category", ins.category}, {"question", ins.turns[0]}}, {}};
      if (ins.turns.size() > 1) item.meta["questions"] = ins.turns;  // the judge's second-turn prompt quotes them
      for (size_t turn = 1; turn < ins.turns.size(); ++turn) item.later_turns.push_back(render_instruction_prompt(spec, ins, turn));
      items.push_back(std::move(item));
    }
  } else {
    fail("{}: loader {} gives data a generation task cannot use", spec.file, spec.loader);
  }
  const std::string tmpl = spec.chat ? chat_template_for(spec, model) : "";
  for (auto& item : items) {
    item.prompt = spec.chat ? apply_chat_template(tmpl, {{"user", item.question_prompt}}) : item.question_prompt;
  }
  return items;
}

// Scores one generation with every text metric of the task; judge metrics are left to the judge stage.
nlohmann::json score_generation(const TaskSpec& spec, const GenerationItem& item, const Generation& g) {
  const std::string text = scored_text(spec, item, g.text);
  nlohmann::json scores = nlohmann::json::object();
  for (const auto& name : spec.metrics) {
    const MetricInfo& info = metric(name);
    if (info.kind == "text") scores[name] = info.fn(text, item.references);
  }
  return {{"id", item.id},           {"prompt", item.prompt},       {"output", g.text},
          {"scored_text", text},     {"references", item.references}, {"finish_reason", g.finish_reason},
          {"prompt_tokens", g.prompt_tokens}, {"new_tokens", g.tokens.size()}, {"scores", scores},
          {"meta", item.meta}};
}

// MT-Bench's second (and later) turns: the chat so far, the model's own answers included, then the next question.
std::vector<std::string> later_turn_outputs(const Model& model, const TaskSpec& spec, const GenerationItem& item,
                                            const std::string& first_answer, uint64_t row_seed) {
  const std::string tmpl = chat_template_for(spec, model);
  std::vector<ChatMessage> messages = {{"user", item.question_prompt}, {"assistant", first_answer}};
  std::vector<std::string> answers = {first_answer};
  SamplingOptions sampling = sampling_for(spec, tmpl);
  for (size_t turn = 0; turn < item.later_turns.size(); ++turn) {
    messages.push_back({"user", item.later_turns[turn]});
    sampling.row_seeds = {row_seed + turn + 1};
    auto ids = model.tokenizer().encode(apply_chat_template(tmpl, messages), model.tokenizer().add_bos_default(), true);
    answers.push_back(generate(model, {ids}, sampling)[0].text);
    messages.push_back({"assistant", answers.back()});
  }
  return answers;
}

void run_generation(const Model& model, const TaskSpec& spec, const TaskData& data, const RunOptions& options,
                    uint64_t seed, ResultsLog& log) {
  const auto items = generation_items(spec, model, data, options.limit);
  const std::string tmpl = spec.chat ? chat_template_for(spec, model) : "";
  const Tokenizer& tokenizer = model.tokenizer();
  std::vector<std::vector<int32_t>> ids(items.size());
  for (size_t i = 0; i < items.size(); ++i) ids[i] = tokenizer.encode(items[i].prompt, tokenizer.add_bos_default(), spec.chat);
  // Longest first: the slowest batches start while the estimate is fresh, and rows of a batch pad little.
  std::vector<size_t> order(items.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a].size() > ids[b].size(); });
  const auto step = static_cast<size_t>(std::max<int64_t>(1, options.batch_size));
  const SamplingOptions base = sampling_for(spec, tmpl);
  Progress progress(fmt::format("{} seed {}", spec.name, seed), static_cast<int64_t>(items.size()), "examples");
  for (size_t start = 0; start < order.size(); start += step) {
    std::vector<size_t> batch(order.begin() + static_cast<long>(start),
                              order.begin() + static_cast<long>(std::min(order.size(), start + step)));
    const bool all_done = std::all_of(batch.begin(), batch.end(), [&](size_t i) { return log.has(items[i].id); });
    if (!all_done) {
      std::vector<std::vector<int32_t>> prompts;
      SamplingOptions sampling = base;
      for (size_t i : batch) {
        prompts.push_back(ids[i]);
        sampling.row_seeds.push_back(example_seed(seed, items[i].id));
        if (spec.decoding.max_length_factor > 0) {
          // LLM-KICK's FreebaseQA bounds the whole sequence at factor x the prompt's length, row by row.
          const auto total = static_cast<int64_t>(spec.decoding.max_length_factor * static_cast<double>(ids[i].size()));
          sampling.row_max_new_tokens.push_back(std::max<int64_t>(1, total - static_cast<int64_t>(ids[i].size())));
        }
      }
      auto generations = generate(model, prompts, sampling);
      std::vector<nlohmann::json> records;
      for (size_t b = 0; b < batch.size(); ++b) {
        auto record = score_generation(spec, items[batch[b]], generations[b]);
        record["seed"] = seed;
        if (!items[batch[b]].later_turns.empty()) record["turns"] = later_turn_outputs(model, spec, items[batch[b]], generations[b].text, sampling.row_seeds[b]);
        records.push_back(std::move(record));
      }
      log.append(records);
    }
    progress.update(static_cast<int64_t>(std::min(order.size(), start + step)));
  }
  progress.finish();
}

void run_mmlu(const Model& model, const TaskSpec& spec, const MmluData& data, const RunOptions& options,
              ResultsLog& log) {
  int64_t total = 0;
  for (const auto& subject : data.subjects) {
    const auto n = static_cast<int64_t>(data.test.at(subject).size());
    total += options.limit > 0 ? std::min(n, options.limit) : n;
  }
  Progress progress(spec.name, total, "questions");
  int64_t done = 0;
  for (const auto& subject : data.subjects) {
    const auto& test = data.test.at(subject);
    const size_t n = options.limit > 0 ? std::min(test.size(), static_cast<size_t>(options.limit)) : test.size();
    std::vector<MmluExample> pending;
    std::vector<std::string> pending_ids;
    for (size_t i = 0; i < n; ++i) {
      std::string id = fmt::format("{}:{}", subject, i);
      if (!log.has(id)) {
        pending.push_back(test[i]);
        pending_ids.push_back(std::move(id));
      }
    }
    if (!pending.empty()) {
      auto predictions = score_mmlu_subject(model, spec, mmlu_subject_shots(spec, data, subject), pending, options.batch_size);
      std::vector<nlohmann::json> records;
      for (size_t i = 0; i < pending.size(); ++i) {
        const auto& p = predictions[i];
        records.push_back({{"id", pending_ids[i]},
                           {"subject", subject},
                           {"answer", std::string(1, pending[i].answer)},
                           {"predicted", p.predicted ? std::string(1, p.predicted) : ""},
                           {"correct", p.predicted == pending[i].answer},
                           {"logprobs", p.logprobs},
                           {"shots", p.shots},
                           {"prefix_reused", p.prefix_reused},
                           {"source", pending[i].source}});
      }
      log.append(records);
    }
    done += static_cast<int64_t>(n);
    progress.update(done);
  }
  progress.finish();
}

void run_perplexity(const Model& model, const TaskSpec& spec, const std::string& raw, const RunOptions& options,
                    ResultsLog& log) {
  if (log.has("perplexity")) return;
  const std::string text = spec.option("format", "wikitext") == "wikitext" ? wikitext_join(raw) : raw;
  const int64_t seqlen = std::min<int64_t>(std::stoll(spec.option("seqlen", "2048")), model.config().max_position);
  auto ids = model.tokenizer().encode(text, model.tokenizer().add_bos_default());
  const int64_t windows = static_cast<int64_t>(ids.size()) / seqlen;
  Progress progress(spec.name, options.limit > 0 ? std::min(options.limit, windows) : windows, "windows");
  auto result = perplexity(model, ids, seqlen, options.limit, [&](int64_t done, int64_t) { progress.update(done); });
  progress.finish();
  log.append({{{"id", "perplexity"},
               {"perplexity", result.perplexity},
               {"mean_nll", result.mean_nll},
               {"windows", result.windows},
               {"all_windows", windows},
               {"seqlen", seqlen},
               {"scored_tokens", result.scored_tokens},
               {"total_tokens", result.total_tokens}}});
}

bool has_judge_metric(const TaskSpec& spec) {
  return std::any_of(spec.metrics.begin(), spec.metrics.end(), [](const std::string& m) { return metric(m).kind == "judge"; });
}

// The judge prompt for one record and how its reply reads: LLM-KICK's summary reviewer (four aspect pairs), its
// mt_conversation reviewers chosen by category (one pair), or FastChat's single-answer grader (one rating).
std::string judge_prompt_name(const std::string& metric_name, const nlohmann::json& record) {
  if (metric_name == "judge_summary_aspects") return "llmkick_summary";
  if (metric_name == "judge_pairwise_llmkick") return llmkick_mt_judge_for_category(record["meta"].value("category", ""));
  if (metric_name == "judge_rating") return "fastchat_single";
  fail("metric {}: kick ships no judge prompt for it", metric_name);
}

// One judge request: the example it belongs to and the score names its reply fills.
struct JudgeJob {
  std::string id;
  std::string reply_format;
  std::string score_suffix;  // "" or "_turn2" (MT-Bench's second turn under judge_rating)
};

// Reads one reply into `scores`; returns why it could not be read ("" when it could).
std::string read_judge_reply(const JudgeJob& job, const std::string& text, nlohmann::json& scores) {
  if (job.reply_format == "llmkick_summary") {
    auto parsed = parse_judge_summary_llmkick(text);
    if (!parsed.ok()) return parsed.error;
    for (const auto& [aspect, pair] : *parsed.value) {
      scores["judge_" + aspect + "_reference"] = pair.first;
      scores["judge_" + aspect] = pair.second;
    }
  } else if (job.reply_format == "rating") {
    auto parsed = parse_judge_rating(text);
    if (!parsed.ok()) return parsed.error;
    scores["judge_rating" + (job.score_suffix.empty() ? std::string("_turn1") : job.score_suffix)] = *parsed.value;
  } else {
    auto parsed = parse_judge_pair_llmkick(text);
    if (!parsed.ok()) return parsed.error;
    scores["judge_reference"] = parsed.value->first;
    scores["judge"] = parsed.value->second;
  }
  return "";
}

// Judges every generated record that has no judgement yet; judgements go to their own log beside the
// generations, so a resumed run re-asks only what was never answered. A failed request or an unreadable reply
// is recorded as failed, with the raw reply, and counts against the exit status. Pairwise metrics need the
// reference run's answer to the same example; judge_rating grades each answer alone (both MT-Bench turns).
void run_judge(const TaskSpec& spec, const RunOptions& options, uint64_t seed, const ResultsLog& generations,
               ResultsLog& judged) {
  std::string metric_name;
  for (const auto& m : spec.metrics) {
    if (metric(m).kind == "judge") metric_name = m;
  }
  const bool pairwise = metric_name != "judge_rating";
  std::optional<ResultsLog> reference;
  std::filesystem::path reference_path;
  if (pairwise && !options.judge_against_references) {
    reference_path = options.judge_reference / fmt::format("{}.{}", spec.name, spec.protocol) / fmt::format("seed{}.jsonl", seed);
    if (options.judge_reference.empty() || !std::filesystem::exists(reference_path)) {
      fail("judge reference {}: not found ({} compares two answers: run the reference model, e.g. the dense one, into "
           "that folder first and pass it as --judge-reference)",
           reference_path.string(), metric_name);
    }
    reference.emplace(reference_path);
  }
  std::map<std::string, JudgePrompt> prompts;  // read once per run, not once per record
  auto prompt_named = [&](const std::string& name) -> const JudgePrompt& {
    auto it = prompts.find(name);
    if (it == prompts.end()) it = prompts.emplace(name, load_judge_prompt(name)).first;
    return it->second;
  };
  std::vector<JudgeJob> jobs;
  std::vector<JudgeRequest> requests;
  for (const auto& [id, record] : generations.records()) {
    if (judged.has(id)) continue;
    const JudgePrompt& prompt = prompt_named(judge_prompt_name(metric_name, record));
    const std::string question = record["meta"].value("question", record.value("prompt", ""));
    const std::string answer = record.at("output").get<std::string>();
    if (pairwise && options.judge_against_references) {
      std::string joined;
      for (const auto& r : record.value("references", nlohmann::json::array())) joined += (joined.empty() ? "" : "\n") + r.get<std::string>();
      if (joined.empty()) fail("{}: example {} has no reference answer to judge against", spec.file, id);
      requests.push_back(render_judge_prompt(prompt, question, joined, answer));
      jobs.push_back({id, prompt.reply, ""});
      continue;
    }
    if (pairwise) {
      const auto ref = reference->records().find(id);
      if (ref == reference->records().end()) fail("{}: no reference answer for example {}", reference_path.string(), id);
      requests.push_back(render_judge_prompt(prompt, question, ref->second.at("output").get<std::string>(), answer));
      jobs.push_back({id, prompt.reply, ""});
      continue;
    }
    requests.push_back(render_judge_prompt(prompt, {{"question", question}, {"answer", answer}}));
    jobs.push_back({id, prompt.reply, ""});
    const auto& questions = record["meta"].value("questions", nlohmann::json::array());
    if (record.contains("turns") && record["turns"].size() >= 2 && questions.size() >= 2) {
      const JudgePrompt& second = prompt_named("fastchat_single_multi_turn");
      requests.push_back(render_judge_prompt(second, {{"question_1", questions[0].get<std::string>()},
                                                      {"answer_1", record["turns"][0].get<std::string>()},
                                                      {"question_2", questions[1].get<std::string>()},
                                                      {"answer_2", record["turns"][1].get<std::string>()}}));
      jobs.push_back({id, second.reply, "_turn2"});
    }
  }
  if (requests.empty()) return;
  Progress progress(fmt::format("{} judge", spec.name), static_cast<int64_t>(requests.size()), "requests");
  // Requests go out in chunks, and each chunk's judged records are appended (flushed) before the next chunk
  // starts: a judge phase of hours shows its progress and, killed, resumes from the last chunk written.
  // A chunk never splits one example's requests (MT-Bench's two turns make one record).
  const size_t concurrency = std::max<size_t>(1, options.judge_concurrency);
  const size_t chunk = std::max<size_t>(8, 2 * concurrency);
  for (size_t begin = 0; begin < requests.size();) {
    size_t end = std::min(requests.size(), begin + chunk);
    while (end < requests.size() && jobs[end].id == jobs[end - 1].id) ++end;
    const std::vector<JudgeRequest> batch(requests.begin() + static_cast<long>(begin), requests.begin() + static_cast<long>(end));
    const auto replies = options.judge->complete_all(batch, concurrency);
    // One judged record per example, in the order its requests were made.
    std::vector<nlohmann::json> records;
    for (size_t i = begin; i < end;) {
      nlohmann::json scores = nlohmann::json::object(), texts = nlohmann::json::array();
      std::vector<std::string> errors;
      int64_t attempts = 0;
      bool request_failed = false;
      const std::string id = jobs[i].id;
      for (; i < end && jobs[i].id == id; ++i) {
        const JudgeReply& reply = replies[i - begin];
        texts.push_back(reply.text);
        attempts += reply.attempts;
        request_failed = request_failed || !reply.ok;
        const std::string error = reply.ok ? read_judge_reply(jobs[i], reply.text, scores) : "request failed: " + reply.error;
        if (!error.empty()) errors.push_back(jobs[i].score_suffix.empty() ? error : jobs[i].score_suffix.substr(1) + ": " + error);
      }
      if (jobs[i - 1].reply_format == "rating" && errors.empty()) {
        // FastChat's MT-Bench score: the mean over the turns graded.
        double sum = 0;
        int turns = 0;
        for (const auto& [name, value] : scores.items()) {
          if (name.rfind("judge_rating_turn", 0) == 0) sum += value.get<double>(), ++turns;
        }
        scores["judge_rating"] = sum / turns;
      }
      std::string error;
      for (const auto& e : errors) error += (error.empty() ? "" : "; ") + e;
      records.push_back({{"id", id}, {"judge", options.judge->describe()}, {"reply", texts.size() == 1 ? texts[0] : texts},
                         {"attempts", attempts}, {"failed", !error.empty()}, {"request_failed", request_failed},
                         {"error", error}, {"scores", scores}});
    }
    judged.append(records);
    progress.update(static_cast<int64_t>(end));
    begin = end;
  }
  progress.finish();
}

bool is_sampled(const TaskSpec& spec) { return spec.decoding.mode == "sample" && spec.decoding.temperature > 0; }

// Per-seed means of every metric found in the records' "scores" (or the task's own fields).
std::map<std::string, double> seed_means(const TaskSpec& spec, const ResultsLog& log, int64_t& examples,
                                         int64_t& failed, nlohmann::json& details) {
  std::map<std::string, std::vector<double>> values;
  examples = static_cast<int64_t>(log.records().size());
  if (spec.loader.rfind("mmlu", 0) == 0) {
    std::vector<std::pair<std::string, bool>> results;
    for (const auto& [id, r] : log.records()) results.emplace_back(r.at("subject").get<std::string>(), r.at("correct").get<bool>());
    const MmluAccuracy acc = aggregate_mmlu(results);
    std::map<std::string, double> out = {{"accuracy", acc.overall.accuracy()}, {"accuracy_macro_subjects", acc.macro_subjects}};
    for (const auto& [category, cell] : acc.per_category) out["accuracy/" + category] = cell.accuracy();
    nlohmann::json subjects = nlohmann::json::object();
    for (const auto& [subject, cell] : acc.per_subject) subjects[subject] = {{"correct", cell.correct}, {"total", cell.total}};
    details["per_subject"] = subjects;
    return out;
  }
  for (const auto& [id, r] : log.records()) {
    if (r.contains("perplexity")) values["perplexity"].push_back(r["perplexity"].get<double>());
    if (r.value("failed", false)) ++failed;
    if (!r.contains("scores")) continue;
    for (const auto& [name, v] : r["scores"].items()) {
      if (v.is_number()) values[name].push_back(v.get<double>());
    }
  }
  std::map<std::string, double> out;
  for (const auto& [name, v] : values) out[name] = mean_of(v);
  return out;
}

}  // namespace

TaskSummary evaluate_task(const Model& model, const TaskSpec& spec, const RunOptions& options,
                          const nlohmann::json& provenance) {
  const double start = monotonic_seconds();
  if (options.out_dir.empty()) fail("evaluate: no output folder given");
  const auto dir = options.out_dir / fmt::format("{}.{}", spec.name, spec.protocol);
  std::filesystem::create_directories(dir);
  TaskData data = load_task_data(spec);
  // A greedy task gives the same answers for every seed: it runs once, under the first seed.
  std::vector<uint64_t> seeds = options.seeds.empty() ? std::vector<uint64_t>{spec.decoding.seed} : options.seeds;
  const bool sampled = is_sampled(spec);
  if (!sampled) seeds.resize(1);

  TaskSummary summary;
  summary.task = spec.name;
  summary.protocol = spec.protocol;
  summary.version = spec.version;
  summary.seeds = seeds;
  std::map<std::string, std::vector<double>> per_seed;
  for (uint64_t seed : seeds) {
    ResultsLog log(dir / fmt::format("seed{}.jsonl", seed));
    summary.resumed += static_cast<int64_t>(log.resumed());
    if (const auto* mmlu = std::get_if<MmluData>(&data)) {
      run_mmlu(model, spec, *mmlu, options, log);
    } else if (const auto* text = std::get_if<std::string>(&data)) {
      run_perplexity(model, spec, *text, options, log);
    } else {
      run_generation(model, spec, data, options, seed, log);
    }
    int64_t examples = 0, failed = 0;
    for (const auto& [name, value] : seed_means(spec, log, examples, failed, summary.details)) per_seed[name].push_back(value);
    if (has_judge_metric(spec) && options.judge) {
      ResultsLog judged(dir / fmt::format("seed{}.judge.jsonl", seed));
      run_judge(spec, options, seed, log, judged);
      int64_t judged_examples = 0;
      for (const auto& [name, value] : seed_means(spec, judged, judged_examples, failed, summary.details)) {
        per_seed[name].push_back(value);
      }
      summary.details["judge"] = options.judge->describe();
      // Every judged example is counted, parsed or not: a judge that cannot follow its prompt shows up here,
      // not as a missing metric.
      auto& tally = summary.details["judge_tally"];
      // Counted per example (MT-Bench's two turns are one example); request_failed: a request of the example got no
      // reply after its retries (records written before the flag existed: an error that starts with it).
      if (tally.is_null()) tally = {{"judged", 0}, {"parsed", 0}, {"unparseable", 0}, {"request_failed", 0}};
      for (const auto& [id, record] : judged.records()) {
        tally["judged"] = tally["judged"].get<int64_t>() + 1;
        const bool no_reply = record.value("request_failed", record.value("error", "").rfind("request failed", 0) == 0);
        const char* kind = !record.value("failed", false) ? "parsed" : no_reply ? "request_failed" : "unparseable";
        tally[kind] = tally[kind].get<int64_t>() + 1;
      }
    } else if (has_judge_metric(spec)) {
      summary.details["judge"] = "not run: no judge given (kick evaluate --judge-url or --judge-model)";
    }
    summary.examples = examples;
    summary.failed += failed;
  }
  for (const auto& [name, values] : per_seed) {
    summary.metrics[name] = {mean_of(values), stdev_of(values), values, summary.examples};
  }
  summary.seconds = monotonic_seconds() - start;
  nlohmann::json out = summary.to_json();
  out["sampled"] = sampled;
  out["provenance"] = provenance;
  out["tool"] = {{"version", version_string()}, {"git_revision", git_revision()}};
  out["task_file"] = spec.file;
  write_file_atomically(dir / "summary.json", out.dump(2) + "\n");
  return summary;
}

}  // namespace kick::eval
