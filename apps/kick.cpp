// kick: the command-line entry point. Dispatches to subcommands and is the one place (with the
// bindings) where library errors are caught and turned into a message and an exit status.
#include <cstdio>
#include <exception>

#include "common.hpp"

int main(int argc, char** argv) {
  kick::ensure_passive_openmp_wait(argv);
  kick::configure_allocator();
  CLI::App app{"kick: compress LLMs and measure what the compression cost"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kick::version_string());
  kick::app::register_inspect(app);
  kick::app::register_generate(app);
  kick::app::register_perplexity(app);
  kick::app::register_bench(app);
  kick::app::register_compress(app);
  kick::app::register_convert(app);
  kick::app::register_evaluate(app);
  kick::app::register_serve(app);
  kick::app::register_sweep(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kick::Error& e) {
    std::fprintf(stderr, "kick: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "kick: error (LibTorch): %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kick: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
