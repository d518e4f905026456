/** A command argument that names a definition file rather than a registered workflow id. */
export function isWorkflowFile(reference: string): boolean {
  return /\.(ya?ml|json)$/i.test(reference) || reference.includes("/");
}
