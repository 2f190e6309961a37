"""Image metrics (SSIM, LPIPS, EMD) and CLIP similarity as SQL functions; torch loads only when one runs."""
