"""SimpleTuner's configuration keys by settings section, with SimpleTuner's default for each.

Facts only (key names and default values), read from SimpleTuner's options reference and its
argument definitions; used to tell a SimpleTuner key that vtrain does not implement from a typo.
"""

from __future__ import annotations

from typing import Any

#: section -> {key: SimpleTuner's default}
SECTIONS: dict[str, dict[str, Any]] = {
    'ace_step': {
        'acestep_lora_target': 'attn_qkv+linear_qkv', 'lyrics_embedder_lr': None, 'lyrics_embedder_lr_scheduler':
        None, 'lyrics_embedder_optimizer': None, 'lyrics_embedder_train': False, 'validation_audio_duration': 30.0,
        'validation_lyrics': None
    },
    'advanced': {
        'accelerate_config': None, 'accelerate_extra_args': None, 'allow_dataset_oversubscription': False,
        'aspect_bucket_alignment': 64, 'aspect_bucket_disable_rebuild': False, 'aspect_bucket_worker_count': 12,
        'attention_mechanism': 'diffusers', 'audio_flow_schedule_shift': None, 'aws_max_pool_connections': 128,
        'cache_dir': None, 'cache_dir_text': 'cache', 'cache_dir_vae': '', 'caption_dropout_probability': 0.1,
        'compress_disk_cache': True, 'context_parallel_comm_strategy': 'allgather', 'context_parallel_size': 1,
        'data_aesthetic_score': 7.0, 'data_backend_sampling': 'auto-weighting', 'dataloader_prefetch': False,
        'dataloader_prefetch_qlen': 10, 'debug_aspect_buckets': False, 'debug_dataset_loader': False,
        'deepspeed_config': None, 'delete_problematic_images': False, 'delete_unwanted_images': False,
        'diff2flow_enabled': False, 'diff2flow_loss': False, 'disable_bucket_pruning': False,
        'disable_segmented_timestep_sampling': False, 'disable_tf32': False, 'disk_low_action': 'stop',
        'disk_low_script': None, 'disk_low_threshold': None, 'dynamo_backend': 'no', 'dynamo_dynamic': False,
        'dynamo_fullgraph': False, 'dynamo_mode': '', 'dynamo_use_regional_compilation': False,
        'enable_multiprocessing': False, 'find_unused_parameters': None, 'flow_beta_schedule_alpha': 2.0,
        'flow_beta_schedule_beta': 2.0, 'flow_cubic_schedule_weights': None, 'flow_custom_timesteps': None,
        'flow_schedule_auto_shift': False, 'flow_schedule_shift': 3.0, 'flow_sigmoid_scale': 1.0,
        'flow_timesteps_mode': 'fixed-list', 'flow_use_beta_schedule': False, 'flow_use_uniform_schedule': False,
        'freeze_encoder_after': 17, 'freeze_encoder_before': 12, 'freeze_encoder_strategy': 'after',
        'fsdp_activation_checkpointing': False, 'fsdp_auto_wrap_policy': 'TRANSFORMER_BASED_WRAP', 'fsdp_cpu_offload':
        False, 'fsdp_cpu_ram_efficient_loading': False, 'fsdp_enable': False, 'fsdp_limit_all_gathers': True,
        'fsdp_reshard_after_forward': True, 'fsdp_state_dict_type': 'SHARDED_STATE_DICT',
        'fsdp_transformer_layer_cls_to_wrap': None, 'fsdp_version': 2, 'fully_unload_text_encoder': False,
        'i_know_what_i_am_doing': False, 'ignore_final_epochs': False, 'image_processing_batch_size': 32,
        'inference_scheduler_timestep_spacing': 'trailing', 'input_perturbation': 0.0, 'input_perturbation_steps': 0,
        'keep_vae_loaded': False, 'layer_freeze_strategy': None, 'lr_end': 4e-07, 'lr_scale': False, 'lr_scale_sqrt':
        False, 'machine_rank': 0, 'main_process_ip': '127.0.0.1', 'main_process_port': 29500, 'max_workers': 32,
        'maximum_image_size': None, 'metadata_update_interval': 3600, 'minimum_image_size': None, 'mixed_precision':
        'bf16', 'mixflow_enabled': False, 'mixflow_gamma': 0.8, 'noise_offset': 0.1, 'noise_offset_probability': 0.25,
        'num_machines': 1, 'num_processes': 1, 'only_instance_prompt': False, 'override_dataset_config': False,
        'prepend_instance_prompt': False, 'preserve_data_backend_cache': False, 'print_filenames': False,
        'print_sampler_statistics': False, 'read_batch_size': 25, 'sageattention_usage': 'inference', 'same_network':
        True, 'save_text_encoder': False, 'scheduled_sampling_max_step_offset': 0, 'scheduled_sampling_order': 2,
        'scheduled_sampling_prob_end': 0.5, 'scheduled_sampling_prob_start': 0.0, 'scheduled_sampling_probability':
        0.0, 'scheduled_sampling_ramp_shape': 'linear', 'scheduled_sampling_ramp_steps': 0,
        'scheduled_sampling_reflexflow': None, 'scheduled_sampling_reflexflow_alpha': 1.0,
        'scheduled_sampling_reflexflow_beta1': 10.0, 'scheduled_sampling_reflexflow_beta2': 1.0,
        'scheduled_sampling_sampler': 'unipc', 'scheduled_sampling_start_step': 0, 'scheduled_sampling_strategy':
        'uniform', 'set_grads_to_none': False, 'skip_file_discovery': '', 'sla_config': None,
        'soft_min_snr_sigma_data': None, 'strict_epoch_limit': False, 't5_padding': 'unmodified',
        'target_downsample_size': None, 'text_cache_disable': False, 'text_cache_ondemand': False,
        'text_embed_full_cache': False, 'text_encoder_batch_size': 1, 'text_encoder_limit': 100,
        'timestep_bias_begin': 0, 'timestep_bias_end': 1000, 'timestep_bias_multiplier': 1.0, 'timestep_bias_portion':
        0.25, 'timestep_bias_strategy': None, 'torch_num_threads': 8, 'training_scheduler_timestep_spacing':
        'trailing', 'write_batch_size': 128
    },
    'cosmos3': {
        'cosmos3_generator_component': 'auto', 'cosmos3_reasoner_component': 'auto'
    },
    'data': {
        'audio_channels': 1, 'audio_duration_interval': 3.0, 'audio_max_duration_seconds': None,
        'audio_min_duration_seconds': None, 'audio_truncation_mode': 'beginning', 'caption_strategy': 'filename',
        'conditioning_multidataset_sampling': 'random', 'data_backend_config': None, 'delete_nsfw_images': False,
        'enable_nsfw_check': False, 'ignore_missing_files': False, 'instance_prompt': None, 'max_upscale_threshold':
        None, 'nsfw_check_backend_types': 'all', 'nsfw_check_min_votes': 2, 'nsfw_check_models': None,
        'nsfw_check_sample_types': 'image,conditioning', 'nsfw_check_video_frame_count': 3,
        'nsfw_check_video_frame_selection': 'uniform', 'nsfw_check_video_min_flagged_frames': 1,
        'parquet_caption_column': None, 'parquet_filename_column': None, 'resolution': 1024, 'resolution_type':
        'pixel_area', 'tokenizer_max_length': None, 'vae_batch_size': 4, 'vae_cache_scan_behaviour': 'recreate',
        'vae_enable_patch_conv': False, 'vae_enable_slicing': False, 'vae_enable_temporal_roll': False,
        'vae_enable_tiling': False
    },
    'deepfloyd': {
        'deepfloyd_validation_pipeline_mode': 'auto', 'deepfloyd_validation_stage1_model': None,
        'deepfloyd_validation_stage2_model': None, 'deepfloyd_validation_stage3_mode': 'none',
        'deepfloyd_validation_stage3_model': None, 'deepfloyd_validation_stage3_noise_level': 100
    },
    'flux': {
        'custom_text_encoder_intermediary_layers': None, 'flux_attention_masked_training': False,
        'flux_fast_schedule': False, 'flux_guidance_max': 4.0, 'flux_guidance_min': 0.0, 'flux_guidance_mode':
        'constant', 'flux_guidance_value': 1.0, 'flux_lora_target': 'all', 'fuse_qkv_projections': False,
        'validation_guidance_real': 1.0, 'validation_no_cfg_until_timestep': 2
    },
    'hidream': {
        'hidream_load_balancing_loss_weight': None, 'hidream_use_load_balancing_loss': False
    },
    'ideogram': {
        'ideogram_auto_json': True, 'ideogram_fp8_base_upcast': False, 'ideogram_load_unconditional_transformer':
        False, 'ideogram_prompt_enhancer_head_id': 'diffusers/qwen3-vl-8b-instruct-lm-head',
        'ideogram_prompt_upsample': False, 'ideogram_schedule_mu': 0.0, 'ideogram_schedule_std': 1.5,
        'ideogram_uncond_ramtorch': False, 'ideogram_validation': False
    },
    'krea2': {
        'krea2_reference_latents': False
    },
    'logging_fields': {
        'checkpoint_epoch_interval': None, 'checkpoint_step_interval': 500, 'checkpointing_rolling_steps': 0,
        'checkpointing_use_tempdir': False, 'checkpoints_rolling_total_limit': 1, 'custom_tracker': None,
        'delete_invalid_checkpoints': False, 'distillation_config': None, 'distillation_method': None,
        'ema_validation': 'comparison', 'enable_watermark': False, 'framerate': None, 'local_rank': -1, 'logging_dir':
        'logs', 'merge_environment_config': None, 'offload_param_path': None, 'offset_noise': False,
        'quantize_activations': False, 'refiner_training': False, 'refiner_training_invert_schedule': False,
        'refiner_training_strength': 0.2, 'report_to': 'none', 'seed_for_each_device': True, 'snr_weight': 1.0,
        'tracker_image_layout': 'gallery', 'tracker_project_name': 'simpletuner', 'tracker_run_name':
        'simpletuner-testing', 'webhook_config': None, 'webhook_reporting_interval': None
    },
    'lora': {
        'assistant_lora_inference_strength': 0.0, 'assistant_lora_path': None, 'assistant_lora_strength': 1.0,
        'disable_assistant_lora': False, 'init_lokr_norm': None, 'init_lora': None, 'init_lora_ema': None,
        'init_lora_step': None, 'lora_alpha': None, 'lora_dropout': 0.1, 'lora_format': 'diffusers', 'lora_init_type':
        'default', 'lora_rank': 16, 'lora_type': 'standard', 'lycoris_config': 'config/lycoris_config.json',
        'peft_lora_mode': 'standard', 'peft_lora_target_modules': None, 'singlora_ramp_up_steps': 0,
        'slider_lora_target': False, 'use_dora': False
    },
    'loss': {
        'crepa_adjacent_distance': 1, 'crepa_adjacent_tau': 1.0, 'crepa_block_index': 8, 'crepa_cutoff_step': 0,
        'crepa_decay_steps': 0, 'crepa_drop_vae_encoder': False, 'crepa_enabled': False, 'crepa_encoder':
        'dinov2_vitg14', 'crepa_encoder_frames_batch_size': -1, 'crepa_encoder_image_size': 518,
        'crepa_feature_source': 'encoder', 'crepa_lambda': 0.5, 'crepa_lambda_end': 0.0, 'crepa_normalize_by_frames':
        True, 'crepa_normalize_neighbour_sum': False, 'crepa_power': 1.0, 'crepa_scheduler': 'constant',
        'crepa_self_flow': False, 'crepa_self_flow_mask_ratio': 0.1, 'crepa_similarity_ema_decay': 0.99,
        'crepa_similarity_threshold': None, 'crepa_spatial_align': True, 'crepa_teacher_block_index': None,
        'crepa_threshold_mode': 'permanent', 'crepa_use_backbone_features': False, 'crepa_use_tae': False,
        'crepa_warmup_steps': 0, 'huber_c': 0.1, 'huber_schedule': 'snr', 'internal_guidance_block_index': None,
        'internal_guidance_enabled': False, 'internal_guidance_loss_weight': 0.5, 'irepa_enabled': False,
        'irepa_projector_kernel_size': 3, 'irepa_spatial_norm_alpha': 0.6, 'layersync_enabled': False,
        'layersync_lambda': 0.2, 'layersync_student_block': None, 'layersync_teacher_block': None, 'loss_type': 'l2',
        'masked_loss_probability': 1.0, 'nextlat_block_index': -1, 'nextlat_enabled': False, 'nextlat_kl_weight': 0.0,
        'nextlat_state_loss': 'smooth_l1', 'nextlat_weight': 0.0, 'snr_gamma': None, 'twinflow_enabled': False,
        'twinflow_target_step_count': 1, 'urepa_cutoff_step': 0, 'urepa_decay_steps': 0, 'urepa_enabled': False,
        'urepa_encoder_image_size': 518, 'urepa_lambda': 0.5, 'urepa_lambda_end': 0.0, 'urepa_manifold_weight': 3.0,
        'urepa_model': 'dinov2_vitg14', 'urepa_power': 1.0, 'urepa_scheduler': 'constant',
        'urepa_similarity_ema_decay': 0.99, 'urepa_similarity_threshold': None, 'urepa_threshold_mode': 'permanent',
        'urepa_use_tae': False, 'urepa_warmup_steps': 0, 'validation_internal_guidance_scale': 1.0, 'xm_block_size':
        0, 'xm_candidate_count': 1, 'xm_enabled': False, 'xm_selection_scope': 'sample', 'xm_training_target': 'noise'
    },
    'ltx': {
        'ltx_i2v_prob': 0.1, 'ltx_partial_noise_fraction': 0.05, 'ltx_protect_first_frame': False, 'ltx_train_mode':
        'i2v'
    },
    'ltxvideo2': {
        'ltx2_first_frame_conditioning_probability': 0.0, 'ltx2_mask_conditioning_probability': 0.0,
        'ltx2_prefix_conditioning_frames': 1, 'ltx2_prefix_conditioning_probability': 0.0,
        'ltx2_reference_spatial_scale_factor': None, 'ltx2_reference_temporal_scale_factor': 1,
        'ltx2_suffix_conditioning_frames': 1, 'ltx2_suffix_conditioning_probability': 0.0,
        'ltx2_intrinsic_conditioning': None, 'ltx2_validation_audio_guidance': None, 'ltx2_validation_pipeline_mode':
        'trained-stage', 'ltx2_validation_spatial_upsampler_filename': 'ltx-2.3-spatial-upscaler-x2-1.1.safetensors',
        'ltx2_validation_spatial_upsampler_model': 'Lightricks/LTX-2.3', 'validation_audio_only': False,
        'validation_ltx2_video_conditioning': None
    },
    'memory': {
        'gradient_accumulation_steps': 1
    },
    'minimaxh3': {
        'minimax_h3_reference_mode': 'vanilla', 'minimax_h3_sparse_attention': 'disabled',
        'minimax_h3_sparse_block_shape': '1,8,16', 'minimax_h3_sparse_share_heads': False,
        'minimax_h3_sparse_start_layer': 0, 'minimax_h3_sparse_video_kv_fraction': 0.5, 'minimax_h3_target_mode':
        'auto'
    },
    'minimaxmusic': {
        'minimax_music_lm_adapter': '', 'minimax_music_lm_adapter_strength': 1.0, 'minimax_music_lm_max_frames': 0,
        'minimax_music_lm_precache_mode': 'text-only', 'minimax_music_train_component': 'transformer'
    },
    'model': {
        'accelerator_cache_clear_interval': None, 'aspect_bucket_rounding': 2, 'base_model_default_dtype': 'bf16',
        'base_model_precision': 'no_change', 'configs_dir': '', 'control': False, 'controlnet': False,
        'controlnet_custom_config': None, 'controlnet_model_name_or_path': None, 'delete_model_after_load': False,
        'diffusion_blocks_config': None, 'gradient_checkpointing_interval': None,
        'gradient_checkpointing_segment_stride': None, 'max_grounding_entities': 0, 'model_family': None,
        'model_flavour': None, 'model_type': 'full', 'offload_during_startup': False, 'output_dir':
        'simpletuner-results', 'prediction_type': None, 'pretrained_gemma_model_name_or_path': None,
        'pretrained_grounding_model_name_or_path': None, 'pretrained_model_name_or_path': None,
        'pretrained_t5_model_name_or_path': None, 'pretrained_transformer_model_name_or_path': None,
        'pretrained_transformer_subfolder': 'transformer', 'pretrained_unet_model_name_or_path': None,
        'pretrained_unet_subfolder': 'unet', 'pretrained_vae_model_name_or_path': 'madebyollin/sdxl-vae-fp16-fix',
        'quantization_config': None, 'quantize_via': 'accelerator', 'qwen_text_encoder_model_name_or_path': None,
        'rescale_betas_zero_snr': False, 'resume_from_checkpoint': 'latest', 'revision': None, 'sdnq_compile_mode':
        'auto', 'sdnq_group_size': None, 'sdnq_hadamard_group_size': None, 'sdnq_use_hadamard': None,
        'sdnq_quantized_matmul_dtype': 'auto', 'sdnq_use_quantized_matmul': None,
        'sdnq_weights_dtype': None, 'seed': None, 'tread_config': None, 'trust_remote_code': False,
        'unet_attention_slice': False, 'vae_cache_disable': False, 'vae_cache_ondemand': False, 'vae_dtype': 'bf16',
        'variant': None
    },
    'optimizer': {
        'adam_beta1': 0.9, 'adam_beta2': 0.999, 'adam_epsilon': 1e-08, 'adam_weight_decay': 0.01, 'fuse_optimizer':
        False, 'grad_clip_method': 'value', 'gradient_precision': None, 'max_grad_norm': 2.0, 'optimizer_beta1': None,
        'optimizer_beta2': None, 'optimizer_config': None, 'optimizer_cpu_offload_method': None,
        'optimizer_offload_gradients': False, 'optimizer_release_gradients': False, 'prodigy_steps': None
    },
    'pixart': {
        'pixart_validation_pipeline_mode': 'trained-stage', 'pixart_validation_stage1_model': None,
        'pixart_validation_stage2_model': None
    },
    'publishing': {
        'hub_model_id': None, 'model_card_note': None, 'model_card_private': True, 'model_card_safe_for_work': False,
        'modelspec_comment': None, 'post_checkpoint_script': None, 'post_upload_script': None, 'publishing_config':
        None, 'push_checkpoints_to_hub': False, 'push_to_hub': False, 'push_to_hub_background': False
    },
    'sana': {
        'sana_complex_human_instruction': None
    },
    'sd3': {
        'sd3_clip_uncond_behaviour': 'empty_string', 'sd3_t5_uncond_behaviour': None
    },
    'sdxl': {
        'sdxl_refiner_uses_full_range': False, 'sdxl_validation_pipeline_mode': 'trained-stage',
        'sdxl_validation_stage1_model': None, 'sdxl_validation_stage2_model': None
    },
    'training': {
        'checkpoints_total_limit': 5, 'ema_cpu_only': False, 'ema_decay': 0.995, 'ema_device': 'cpu',
        'ema_foreach_disable': False, 'ema_update_interval': 1, 'ema_warmup_steps': 0, 'enable_group_offload': False,
        'gradient_checkpointing': True, 'gradient_checkpointing_backend': 'torch',
        'gradient_checkpointing_offload_attention': False, 'gradient_checkpointing_offload_pin_memory_max_buckets':
        12, 'gradient_checkpointing_offload_prefetch': False, 'group_offload_blocks_per_group': 1,
        'group_offload_text_encoder': False, 'group_offload_to_disk_path': '', 'group_offload_type': 'block_level',
        'group_offload_use_stream': False, 'group_offload_vae': False, 'learning_rate': 4e-07, 'lr_num_cycles': 1,
        'lr_power': 0.8, 'lr_scheduler': 'constant_with_warmup', 'lr_warmup_steps': 0, 'max_train_steps': None,
        'musubi_block_swap_device': 'cpu', 'musubi_blocks_to_swap': 0, 'num_train_epochs': 1, 'offload_during_save':
        False, 'optimizer': 'adamw_bf16', 'ramtorch': False, 'ramtorch_controlnet': False,
        'ramtorch_disable_extensions': True, 'ramtorch_disable_sync_hooks': False, 'ramtorch_target_modules': None,
        'ramtorch_text_encoder': False, 'ramtorch_text_encoder_percent': 100, 'ramtorch_transformer_percent': 100,
        'ramtorch_vae': False, 'text_encoder_lr': None, 'train_batch_size': 4, 'train_text_encoder': False, 'use_ema':
        False, 'use_soft_min_snr': False
    },
    'validation': {
        'disable_benchmark': False, 'eval_dataset_id': None, 'eval_dataset_pooling': False, 'eval_epoch_interval':
        None, 'eval_loss_disable': False, 'eval_steps_interval': None, 'eval_timesteps': 28, 'evaluation_type':
        'none', 'num_eval_images': 4, 'num_validation_images': 1, 'pretrained_evaluation_model_name_or_path':
        'openai/clip-vit-large-patch14-336', 'user_prompt_library': None, 'validate_after_epoch': None,
        'validate_after_step': None, 'validation_adapter_config': None, 'validation_adapter_mode': 'adapter_only',
        'validation_adapter_name': None, 'validation_adapter_path': None, 'validation_adapter_strength': 1.0,
        'validation_disable': False, 'validation_disable_unconditional': False, 'validation_epoch_interval': None,
        'validation_external_background': False, 'validation_external_script': None, 'validation_guidance': 7.5,
        'validation_guidance_rescale': 0.0, 'validation_guidance_skip_layers': None,
        'validation_guidance_skip_layers_start': 0.01, 'validation_guidance_skip_layers_stop': 0.2,
        'validation_guidance_skip_scale': 2.8, 'validation_image_format': 'png', 'validation_image_quality': 90,
        'validation_input': None, 'validation_lycoris_strength': 1.0, 'validation_method': 'simpletuner-local',
        'validation_multigpu': 'batch-parallel', 'validation_negative_prompt': 'blurry, cropped, ugly',
        'validation_noise_scheduler': None, 'validation_num_inference_steps': 30, 'validation_num_video_frames': None,
        'validation_on_startup': False, 'validation_preview': False, 'validation_preview_steps': 1,
        'validation_prompt': None, 'validation_prompt_library': False, 'validation_randomize': False,
        'validation_resolution': '256', 'validation_seed': None, 'validation_seed_source': 'cpu',
        'validation_step_interval': 100, 'validation_stitch_input_location': 'left', 'validation_using_datasets': None
    },
    'wan': {
        'enable_chunked_feed_forward': False, 'feed_forward_chunk_size': None, 'wan_force_2_1_time_embedding': False,
        'wan_validation_load_other_stage': False
    },
}

#: key -> (section, SimpleTuner's default)
SIMPLETUNER_KEYS: dict[str, tuple[str, Any]] = {
    key: (section, default) for section, keys in SECTIONS.items() for key, default in keys.items()
}
