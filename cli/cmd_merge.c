/* emdpo merge: a PEFT LoRA adapter merged into its base, written as a full
 * checkpoint in the base's format. */
#include "cli.h"

int cmd_merge(int argc, char **argv) {
    emdpo_merge_opts o;
    emdpo_merge_opts_init(&o);
    int save_dtype = EMDPO_DTYPE_AUTO;
    cli_opt opts[] = {
        {"model", CLI_STR, &o.model, "BASE", "the base: a Hugging Face directory, a GGUF file or a llama2.c .bin", 1, 0,
         0},
        {"adapter", CLI_STR, &o.adapter, "DIR",
         "a PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors) made for the base", 1, 0, 0},
        {"out", CLI_STR, &o.out, "PATH",
         "the merged model, in the base's format: a Hugging Face directory, a GGUF file "
         "or a llama2.c .bin",
         1, 0, 0},
        {"tokenizer", CLI_STR, &o.tokenizer, "PATH",
         "Hugging Face output: the tokenizer whose files and BOS/EOS ids are written beside the weights (default: "
         "the base directory's tokenizer.json, when it has one); GGUF output: the vocabulary to embed (default: the "
         "base's)",
         0, 0, 0},
        CLI_SAVE_DTYPE_FLAG(&save_dtype),
    };
    cli_cmd cmd = {"merge", "Merge a LoRA adapter into its base model: W + (lora_alpha / r) B A.",
                   "The adapter is read as peft.PeftModel.from_pretrained reads it (target_modules as a list,\n"
                   "a regular expression or \"all-linear\"; F32, F16 or BF16 tensors). The output has the\n"
                   "base's format: a Hugging Face directory (config.json, model.safetensors in --save-dtype,\n"
                   "the tokenizer's files), a GGUF file (auto: the base's dtype, f32 for a quantised one) or\n"
                   "a llama2.c checkpoint (f32). An adapter made for another model, DoRA, trained biases or\n"
                   "modules_to_save exit with code 2, naming the file and the key or tensor.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    o.dtype = (emdpo_dtype)save_dtype;
    emdpo_diag diag;
    rc = emdpo_merge_run(&o, &diag);
    return rc ? cli_fail("merge", rc, &diag, &cmd) : 0;
}
