// Kept equal to package.json's "version" (a unit test checks it), so the one-file
// bundle needs no package.json beside it.
export const VERSION = '0.1.0';
