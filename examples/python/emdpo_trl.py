"""EM-DPO around Hugging Face TRL's DPOTrainer, with emdpo doing the E-step.

Documentation only: TRL is not installed where emdpo is tested, so this file
is not run (examples/python/emdpo_torch.py is the tested, complete loop in
plain PyTorch). It shows exactly which numbers go from TRL to emdpo and
back. Two things TRL lacks and you add:

- per-example weights (TRL declined them, huggingface/trl#5613): a small
  DPOTrainer subclass multiplies each example's loss by a "weight" column;
- multi-item DPO (huggingface/trl#1831): a ternary decision becomes its two
  (chosen, rejected) pairs for TRL's pairwise loss, each with the decision's
  weight. The E-step still uses the whole decision's likelihood (all items,
  Plackett-Luce for rankings), which is what identifies the types.

The numbers:

  logratios[k, item] = log pi_k(item | prompt) - log pi_ref(item | prompt):
      the summed log-probabilities of the response tokens, exactly what
      DPOTrainer computes as policy_chosen_logps - reference_chosen_logps
      (and the same for rejected), computed for EVERY item of a decision
      (chosen first) under EVERY type's model k.
  beta = DPOConfig.beta (the same beta the DPO loss uses).
  offsets, annotator: decision j's items are columns offsets[j]:offsets[j+1];
      annotator[j] in 0..n_annotators-1.
  weights[:, k] from emdpo.weights(gamma, annotator, normalize=True): the
      "weight" column of type k's next DPOTrainer run, mean 1 over decisions
      (emdpo's own Llama M-step default; normalize=False gives the authors'
      raw gamma).

Sketch (transformers / TRL >= 0.9 API; one policy per type, LoRA adapters on
a shared base work the same way):

    import numpy as np, torch, emdpo
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    class WeightedDPOTrainer(DPOTrainer):
        # each example's DPO loss times its "weight" (TRL averages losses)
        def get_batch_loss_metrics(self, model, batch, train_eval="train"):
            w = batch.pop("weight")                          # (B,)
            out = self.concatenated_forward(model, batch)
            with torch.no_grad():
                ref = self.concatenated_forward(self.ref_model, batch)
            losses, chosen_r, rejected_r = self.dpo_loss(
                out["chosen_logps"], out["rejected_logps"], ref["chosen_logps"], ref["rejected_logps"])
            return (w * losses).mean(), {}

    @torch.no_grad()
    def sequence_logps(model, tokenizer, prompts, responses):
        # sum of log p(response tokens | prompt): TRL's *_logps, for any list of responses
        out = []
        for p, r in zip(prompts, responses):
            ids_p = tokenizer(p, return_tensors="pt").input_ids
            ids = tokenizer(p + r + tokenizer.eos_token, return_tensors="pt").input_ids
            logits = model(ids).logits[0, :-1].log_softmax(-1)
            tgt = ids[0, 1:]
            lp = logits.gather(-1, tgt[:, None])[:, 0]
            out.append(lp[ids_p.shape[1] - 1:].sum().item())
        return np.array(out)

    # decisions: prompts[j], items[j] = [chosen, rejected_1, rejected_2], annotator[j]
    offsets = np.concatenate([[0], np.cumsum([len(it) for it in items])]).astype(np.int64)
    flat_prompts = [p for p, it in zip(prompts, items) for _ in it]
    flat_items = [y for it in items for y in it]
    ref_lp = sequence_logps(ref_model, tokenizer, flat_prompts, flat_items)

    gamma = initial_gamma            # (n_annotators, K), e.g. k-means on annotator summaries
    eta = gamma.mean(0)
    for it in range(n_iterations):
        w = emdpo.weights(gamma, annotator, normalize=True)               # (n_decisions, K)
        for k in range(K):                                                 # M-step: weighted DPO per type
            pairs = {"prompt": [], "chosen": [], "rejected": [], "weight": []}
            for j in range(len(items)):
                for rej in items[j][1:]:
                    pairs["prompt"].append(prompts[j]); pairs["chosen"].append(items[j][0])
                    pairs["rejected"].append(rej); pairs["weight"].append(float(w[j, k]))
            WeightedDPOTrainer(model=policies[k], ref_model=ref_model,
                               args=DPOConfig(beta=beta, remove_unused_columns=False, output_dir=f"type_{k}"),
                               train_dataset=Dataset.from_dict(pairs), processing_class=tokenizer).train()
        logratios = np.stack([sequence_logps(policies[k], tokenizer, flat_prompts, flat_items) - ref_lp
                              for k in range(K)])                          # (K, total items), float64
        gamma, eta, loglik = emdpo.estep(logratios, offsets, annotator, beta, eta)   # E-step, exact, log space
        print(it, loglik, eta)

    # MMRA-AE: R[k, k'] = L[k, k] - L[k, k'], L[k, k'] = E_{y ~ pi_k'}[beta log(pi_k / pi_ref)],
    # e.g. over each decision's items (see emdpo_torch.py), or over sampled responses
    w_mix, max_regret, duality_gap = emdpo.mmra_ae(R)
"""
