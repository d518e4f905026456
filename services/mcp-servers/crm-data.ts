/** The demo CRM's contacts. Fictional people; the SSNs use the never-issued 9xx area. */
export interface Contact {
  id: string;
  name: string;
  email: string;
  phone: string;
  ssn: string;
  region: "eu" | "us";
}

export const CONTACTS: readonly Contact[] = [
  {
    id: "c-1",
    name: "Ada Lovelace",
    email: "ada@example.com",
    phone: "+44 20 7946 0018",
    ssn: "900-12-3456",
    region: "eu",
  },
  {
    id: "c-2",
    name: "Grace Hopper",
    email: "grace@example.com",
    phone: "+1 202 555 0147",
    ssn: "900-65-4321",
    region: "us",
  },
  {
    id: "c-3",
    name: "Margaret Hamilton",
    email: "margaret@example.com",
    phone: "+1 617 555 0199",
    ssn: "900-33-7788",
    region: "us",
  },
  {
    id: "c-4",
    name: "Karen Spärck Jones",
    email: "karen@example.com",
    phone: "+44 1223 555 012",
    ssn: "900-48-1290",
    region: "eu",
  },
];
