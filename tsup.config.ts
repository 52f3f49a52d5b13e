import { defineConfig } from 'tsup';

// One file, dist/lunbox.js, runnable with plain `node` and no node_modules beside it.
// Native addons (usb, serialport) stay external and are loaded lazily on first use.
export default defineConfig({
  entry: { lunbox: 'src/cli/main.ts' },
  format: ['cjs'],
  platform: 'node',
  target: 'node18',
  outDir: 'dist',
  clean: true,
  bundle: true,
  splitting: false,
  sourcemap: false,
  minify: false,
  noExternal: [/^(?!usb$|serialport$|@serialport\/).*/],
  external: ['usb', 'serialport', /^@serialport\//],
  banner: { js: '#!/usr/bin/env node' },
  outExtension: () => ({ js: '.js' }),
});
