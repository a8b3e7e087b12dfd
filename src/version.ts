/** vmbox's version: the CLI's `--version`, the API's `/v1/health` and OpenAPI document. Kept equal to package.json's. */
export const VERSION = '0.1.0';
